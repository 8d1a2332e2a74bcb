"""The server's Prometheus metrics, in a registry of its own (so several apps in one process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServerMetrics"]

_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServerMetrics:
    """Requests by path and status, generation outcomes and times, the queue and the workers."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "workbench_requests", "HTTP requests by path and status", ["path", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "workbench_request_seconds", "HTTP request time by path", ["path"], buckets=_SECONDS, registry=r
        )
        self.jobs = Counter("workbench_jobs", "generation jobs by outcome", ["outcome"], registry=r)
        self.images = Counter("workbench_images", "images generated, by model", ["model"], registry=r)
        self.queue_seconds = Histogram(
            "workbench_queue_seconds", "time a job waited for a worker", buckets=_SECONDS, registry=r
        )
        self.run_seconds = Histogram(
            "workbench_generation_seconds", "time a job spent on a worker", buckets=_SECONDS, registry=r
        )
        self.rejections = Counter("workbench_queue_rejections", "requests refused with 429 (queue full)", registry=r)
        self.auth_failures = Counter(
            "workbench_auth_failures", "requests refused with 401 (a missing or wrong API key)", registry=r
        )
        self.restarts = Counter("workbench_worker_restarts", "workers replaced after a failed generation", registry=r)
        self.queued = Gauge("workbench_queue_depth", "jobs waiting for a worker", registry=r)
        self.busy = Gauge("workbench_workers_busy", "workers generating now", registry=r)
        self.workers = Gauge("workbench_workers", "workers in the pool", registry=r)

    def watch(self, pool) -> None:
        """Read the queue depth and worker counts from ``pool`` at each scrape."""
        self.queued.set_function(lambda: pool.queued)
        self.busy.set_function(lambda: pool.busy)
        self.workers.set_function(lambda: len(pool.workers))

    def request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path, str(status)).inc()
        self.request_seconds.labels(path).observe(seconds)

    def finished(self, job, outcome: str) -> None:
        self.jobs.labels(outcome).inc()
        if job.started is not None:
            self.queue_seconds.observe(job.queued_s)
            self.run_seconds.observe(job.run_s)
        if outcome == "ok":
            self.images.labels(job.task.plan.model_id).inc(len(job.task.seeds))

    def rejected(self) -> None:
        self.rejections.inc()

    def auth_failed(self) -> None:
        self.auth_failures.inc()

    def restarted(self) -> None:
        self.restarts.inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
