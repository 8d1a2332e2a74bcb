"""One worker per device, each owning its pipelines and generating one request at a time.

Requests wait in one bounded queue and the first worker to come free takes the oldest, so work goes to
the least-busy device and a long request never holds up the ones behind it while another device is
idle. A request refused because the queue is full gets a ticket: its place in line among the refused
ones. When room frees up it goes to the tickets in the order they were handed out (a retry presents its
ticket), so clients that retry after a 429 are served in the order they first came; a request without a
ticket only gets in when no ticket is waiting for the room. A ticket not presented again in time lapses.

A request is a ``Job``: what to generate, a cancel flag, and the events it sends from the worker
thread to the event loop (queued, started, progress, complete, error). Diffusers pipelines are not
thread-safe, so a pipeline is only ever used by the worker that loaded it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import secrets
import statistics
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from workbench.config import AccelerationConfig
from workbench.deprecation import renamed_attributes
from workbench.errors import ConfigError, GenerationCancelled, QueueFull, WorkbenchError
from workbench.generation import png_with_settings
from workbench.models import PipelineCache, load, pick_device
from workbench.plan import Plan, resolve, run_plan

__all__ = [
    "MAX_RETRY_WAIT_S",
    "STEP_PROBE_STEPS",
    "TERMINAL",
    "TICKET_GRACE_S",
    "Event",
    "GenerationTask",
    "Job",
    "Worker",
    "WorkerPool",
]

TERMINAL = ("complete", "error")  # the kinds of event that end a job's stream
TICKET_GRACE_S = 10.0  # a ticket lapses this long after twice its wait, unless presented again
MAX_RETRY_WAIT_S = 10.0  # the longest a client is expected to wait between retries (RemoteModel's cap)
STEP_PROBE_STEPS = 3  # the extra steps whose time, at start-up, says what a model's denoising step costs


def _work(width: int, height: int, steps: int, guidance: float, images: int) -> float:
    """A generation's work in megapixel-steps (classifier-free guidance runs the denoiser twice)."""
    return width * height * steps * images * (2 if guidance > 1 else 1) / 1e6


@dataclass(frozen=True)
class GenerationTask:
    """What one request asks a worker to make: a plan (its model loads on the worker), a prompt and seeds."""

    plan: Plan
    prompt: str
    seeds: list[int]
    optimize: bool = False
    style: str | None = None


@dataclass(frozen=True)
class Event:
    kind: str  # queued | started | progress | complete | error
    data: dict[str, Any]


class Job:
    """A task in the pool, with its events (read on the event loop) and its cancel flag (set from anywhere)."""

    def __init__(self, task: GenerationTask, loop: asyncio.AbstractEventLoop, timeout_s: float):
        self.task = task
        self.loop = loop
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.cancel = threading.Event()
        self.submitted = time.monotonic()
        self.deadline = self.submitted + timeout_s
        self.started: float | None = None  # when a worker took it
        self.finished: float | None = None  # when its worker let it go
        self.steps_done = 0  # denoising steps finished
        self.cancelled_at_step: int | None = None  # steps_done when the cancel came (how fast it is honoured)

    @property
    def queued_s(self) -> float:
        """Seconds it waited for a worker (so far, while it waits)."""
        return (self.started or time.monotonic()) - self.submitted

    @property
    def run_s(self) -> float:
        """Seconds on its worker (so far, while it runs; 0 if it never started)."""
        return 0.0 if self.started is None else (self.finished or time.monotonic()) - self.started

    def emit(self, kind: str, **data: Any) -> None:
        """Send an event to the event loop (safe from any thread; dropped once the loop has closed)."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server is shutting down
            self.loop.call_soon_threadsafe(self.events.put_nowait, Event(kind, data))


class Worker:
    """A thread that owns one device's pipelines and runs the pool's jobs one at a time."""

    def __init__(self, pool: WorkerPool, index: int, device: str, cache_items: int):
        self.pool, self.index, self.device = pool, index, device
        self.cache = PipelineCache(max_items=cache_items)
        self.job: Job | None = None
        self.served = 0
        self.thread = threading.Thread(target=self._serve, name=f"workbench-worker-{index}-{device}", daemon=True)

    @property
    def name(self) -> str:
        return f"{self.index}:{self.device}"

    @property
    def loaded_models(self) -> list[str]:
        return [model_id for model_id, _device, _dtype in self.cache.keys()]  # noqa: SIM118 (not a dict)

    def preload(self, model_ids: Sequence[str], acceleration: AccelerationConfig | None = None) -> None:
        """Load each model, then warm it up (with the server's ``acceleration``: torch.compile compiles now,
        not on a request) and time what its denoising steps cost (a long and a short generation apart, so
        encoding and decoding do not count), so the pool can tell how long requests take."""
        for model_id in model_ids:
            load(model_id, device=self.device, cache=self.cache)
            plan = resolve(model_id, "warm-up", acceleration=acceleration)
            plan = replace(plan, config=plan.config.replace(steps=1, batch_size=1))
            run_plan(plan, "warm-up", [0], device=self.device, cache=self.cache)  # untimed: first-call costs
            differences = []
            for _ in range(3):  # the median of three: one noisy timing must not set the model's speed
                seconds = {}
                for steps in (1, 1 + STEP_PROBE_STEPS):
                    timed = replace(plan, config=plan.config.replace(steps=steps))
                    started = time.monotonic()
                    records = run_plan(timed, "warm-up", [0], device=self.device, cache=self.cache)
                    seconds[steps] = time.monotonic() - started
                differences.append(seconds[1 + STEP_PROBE_STEPS] - seconds[1])
            if statistics.median(differences) > 0:
                step_only = replace(records[0], config=records[0].config.replace(steps=STEP_PROBE_STEPS))
                self.pool._observe(plan, [step_only], statistics.median(differences))

    def _serve(self) -> None:
        while (job := self.pool._take(self)) is not None:
            try:
                outcome = self._run(job)
            except Exception as error:  # the pipeline may be left broken: hand the device to a fresh worker
                self.pool._finish(self, job, "failed")
                self.pool._replace(self)
                job.emit(
                    "error",
                    status=500,
                    detail=f"generation failed on worker {self.name} ({type(error).__name__}: {error}); "
                    "the worker was replaced and the request was not retried",
                )
                return
            self.pool._finish(self, job, outcome)

    def _run(self, job: Job) -> str:
        task = job.task
        job.emit("started", worker=self.name, model_id=task.plan.model_id, queued_s=round(job.queued_s, 3))

        def progress(step: int, total: int) -> None:
            job.steps_done = step
            job.emit("progress", step=step, total=total, percent=round(100 * step / total, 1))

        warm = task.plan.model_id in self.loaded_models  # a first run's time includes loading: not a speed
        try:
            records = run_plan(
                task.plan, task.prompt, task.seeds, optimize=task.optimize, style=task.style,
                device=self.device, cache=self.cache, progress=progress, cancel=job.cancel,
            )  # fmt: skip
        except GenerationCancelled:
            return "cancelled"
        except WorkbenchError as error:  # settings this device cannot honour (an acceleration guard, ...)
            job.emit("error", status=422, detail=str(error))
            return "rejected"
        if warm:
            self.pool._observe(task.plan, records, time.monotonic() - job.started)
        images = [
            {"png_base64": base64.b64encode(png_with_settings(r)).decode(), "record": r.to_dict()} for r in records
        ]
        job.emit("complete", images=images, worker=self.name, queued_s=round(job.queued_s, 3))
        return "ok"


class WorkerPool:
    """Workers for ``devices`` (one each; a device may be named twice) behind one queue of ``max_queue``.

    ``metrics`` (a ``ServerMetrics``) is told of every finished, rejected and restarted thing.
    """

    def __init__(self, devices: Sequence[str], *, max_queue: int = 64, cache_items: int = 3, metrics=None):
        if isinstance(devices, str) or not devices:
            raise ConfigError(f"devices must be a non-empty list such as ['cuda:0', 'cuda:1'], got {devices!r}")
        if not isinstance(max_queue, int) or max_queue < 0:
            raise ConfigError(f"max_queue must be an integer >= 0, got {max_queue!r}")
        self.devices = [str(pick_device(d)) for d in devices]
        self.max_queue = max_queue
        self.metrics = metrics
        self._cache_items = cache_items
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._mean_run_s = 1.0  # a running mean of a job's time on a worker, for Retry-After
        self._tickets: dict[str, float] = {}  # refused requests in arrival order: ticket -> when it lapses
        self._speed: dict[str, tuple[float, int, int]] = {}  # model -> (fastest s per work unit, its width, height)
        self.outcomes: dict[str, int] = {"ok": 0, "cancelled": 0, "failed": 0, "rejected": 0}
        self.restarts = 0
        self.last_cancelled: Job | None = None
        self.workers = [Worker(self, i, d, cache_items) for i, d in enumerate(self.devices)]

    # --- life ------------------------------------------------------------------------------------

    def start(self, preload: Sequence[str] = (), acceleration: AccelerationConfig | None = None) -> None:
        """Load and warm up ``preload`` on every worker (in parallel, with ``acceleration``), then start taking
        jobs."""
        failures: list[BaseException] = []
        model_ids = list(preload)

        def load_on(worker: Worker) -> None:
            try:
                worker.preload(model_ids, acceleration)
            except BaseException as error:  # raised below: a setting that cannot work fails the start
                failures.append(error)

        loaders = [threading.Thread(target=load_on, args=(w,)) for w in self.workers]
        for thread in loaders:
            thread.start()
        for thread in loaders:
            thread.join()
        if failures:
            raise failures[0]
        for worker in self.workers:
            worker.thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Refuse new jobs, cancel the queued and running ones, and wait for the workers to stop."""
        with self._cond:
            self._closed = True
            for job in self._pending:
                job.cancel.set()
                job.emit("error", status=503, detail="the server is shutting down")
            self._pending.clear()
            for worker in self.workers:
                if worker.job is not None:
                    worker.job.cancel.set()
            self._cond.notify_all()
        for worker in self.workers:
            if worker.thread.is_alive():
                worker.thread.join(timeout_s)

    # --- the queue -----------------------------------------------------------------------------

    def submit(self, job: Job, ticket: str | None = None) -> int:
        """Queue ``job``; returns its position (1 = next). When the queue is full (for this request: the room
        left goes to earlier tickets first) raises ``QueueFull`` with a ticket, ``ticket`` itself when one
        was presented and is still valid."""
        with self._cond:
            if self._closed:
                raise QueueFull(len(self._pending), self._retry_after())
            now = time.monotonic()
            self._tickets = {t: lapses for t, lapses in self._tickets.items() if lapses > now}
            room = self.max_queue - len(self._pending) + (1 if self._idle_worker() else 0)
            waiting = list(self._tickets)
            ahead = waiting.index(ticket) if ticket in self._tickets else len(waiting)
            if room <= ahead:  # the room left is for the tickets handed out before this request's
                if ticket not in self._tickets:
                    ticket = secrets.token_urlsafe(12)
                    self._tickets[ticket] = 0.0
                position = list(self._tickets).index(ticket) + 1
                retry_after = self._retry_after(position)
                self._tickets[ticket] = now + 2 * min(retry_after, MAX_RETRY_WAIT_S) + TICKET_GRACE_S
                if self.metrics is not None:
                    self.metrics.rejected()
                raise QueueFull(len(self._pending), retry_after, ticket, position)
            self._tickets.pop(ticket, None)
            self._pending.append(job)
            position = len(self._pending)
            job.emit("queued", position=position)
            self._cond.notify()
            return position

    def cancel(self, job: Job) -> None:
        """Stop ``job``: dropped from the queue if waiting, stopped at the next step if running."""
        with self._cond:
            if not job.cancel.is_set():
                job.cancelled_at_step = job.steps_done
                job.cancel.set()
            if job in self._pending:
                self._pending.remove(job)
                self._count("cancelled", job)

    def _idle_worker(self) -> bool:
        return any(w.job is None for w in self.workers) and not self._pending

    def _retry_after(self, position: int = 1) -> float:
        """Seconds until about ``position`` places free up in the queue (at least 0.05)."""
        return max(0.05, self._mean_run_s * position / len(self.workers))

    def _take(self, worker: Worker) -> Job | None:
        """The oldest waiting job for ``worker`` (blocks); None when the pool closes or the worker was retired."""
        with self._cond:
            while not self._closed and self.workers[worker.index] is worker:
                if self._pending:
                    job = self._pending.popleft()
                    job.started = time.monotonic()
                    worker.job = job
                    for position, waiting in enumerate(self._pending, start=1):
                        waiting.emit("queued", position=position)
                    return job
                self._cond.wait()
            return None

    def _finish(self, worker: Worker, job: Job, outcome: str) -> None:
        with self._cond:
            job.finished = time.monotonic()
            worker.job = None
            worker.served += outcome == "ok"
            self._mean_run_s = 0.8 * self._mean_run_s + 0.2 * job.run_s
            self._count(outcome, job)
            self._cond.notify()

    def _count(self, outcome: str, job: Job) -> None:
        self.outcomes[outcome] += 1
        if outcome == "cancelled":
            self.last_cancelled = job
        if self.metrics is not None:
            self.metrics.finished(job, outcome)

    def _replace(self, worker: Worker) -> None:
        """Retire a worker whose generation raised; a fresh one (new pipelines) takes its device."""
        with self._cond:
            worker.cache.clear()
            if self._closed:
                return
            fresh = Worker(self, worker.index, worker.device, self._cache_items)
            self.workers[worker.index] = fresh
            self.restarts += 1
            if self.metrics is not None:
                self.metrics.restarted()
            fresh.thread.start()

    # --- how long requests take ---------------------------------------------------------------

    def _observe(self, plan: Plan, records: Sequence, seconds: float) -> None:
        """Remember the fastest time per work unit seen for the plan's model (and the size it made)."""
        if not records:
            return
        config = records[0].config
        work = _work(config.width, config.height, config.steps, config.guidance, len(records))
        with self._cond:
            fastest = self._speed.get(plan.model_id, (math.inf, 0, 0))[0]
            if seconds / work < fastest:
                self._speed[plan.model_id] = (seconds / work, config.width, config.height)

    def predicted_seconds(self, plan: Plan) -> float | None:
        """About how long a worker takes for ``plan`` (at least: the fastest rate seen for its model), or None
        before the model has made an image here."""
        with self._cond:
            if plan.model_id not in self._speed:
                return None
            rate, width, height = self._speed[plan.model_id]
        config = plan.config
        work = _work(config.width or width, config.height or height, config.steps, config.guidance, config.batch_size)
        return rate * work

    # --- state -----------------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def busy(self) -> int:
        return sum(w.job is not None for w in self.workers)

    def state(self) -> dict[str, Any]:
        """What /healthz shows: each worker's device, job and loaded models, and the queue."""
        with self._cond:
            workers = [
                {
                    "worker": w.name,
                    "busy": w.job is not None,
                    "served": w.served,
                    "models": w.loaded_models,
                }
                for w in self.workers
            ]
            return {"workers": workers, "queued": len(self._pending), "max_queue": self.max_queue,
                    "outcomes": dict(self.outcomes), "restarts": self.restarts}  # fmt: skip


__getattr__ = renamed_attributes(__name__, {"WARMUP_STEPS": "STEP_PROBE_STEPS"}, globals())
