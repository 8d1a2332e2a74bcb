"""The evaluation engine: a study's units (target, prompt, seed) planned into batches, run, and stored.

::

    units ─► plan_batches: a target's units that share a plan (model, settings, toggles) in batches of up
             to batch_size across prompts; rounds interleave the groups, the first one rotating each round,
             so a machine that slows down or speeds up part-way hits every model alike
          ─► an executor: inline (this process), local worker processes (one per device), or Ray actors;
             each runs batches with a BatchRunner: warm up once per plan and batch shape (untimed) ->
             generate the batch (each image its own seeded generator; out of memory: halve and retry) ->
             score -> rows with the batch's time, size and the machine's load meanwhile
          ─► ``sink``: the driver alone saves the PNGs and appends the rows, batch by batch

A batch's images do not depend on where it runs (at the same CPU thread count); per-image latency is the batch's
time over its images.
A worker that dies loses only the batch it was running: the others go on, and ``WorkerLost`` is raised at
the end (a rerun of the study makes what is missing).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from workbench.batch_probe import BatchProbe, known_probe, probe_batch_size, probe_key
from workbench.config import AUTO_BATCH_SIZE
from workbench.deprecation import renamed_attributes
from workbench.device_memory import is_out_of_memory, release_memory
from workbench.errors import ConfigError, WorkbenchError, WorkerLost
from workbench.metrics import MetricOptions, image_scorers
from workbench.models import PipelineCache, default_cache, pick_device
from workbench.plan import Plan, run_plan
from workbench.progress import reported
from workbench.records import GenerationRecord
from workbench.row import Row, check_context
from workbench.system_load import device_name, energy_counter, measure_load

__all__ = [
    "BATCH_WARMUP_STEPS",
    "WORKER_POOLS",
    "Batch",
    "BatchResult",
    "BatchRunner",
    "RunnerSpec",
    "Unit",
    "check_workers",
    "execute",
    "plan_batches",
    "sized_units",
    "worker_devices",
    "worker_threads",
]

BATCH_WARMUP_STEPS = 2  # a warm-up batch has the real batch's shapes; its step count does not change them


@dataclass(frozen=True)
class Unit:
    """One image to make: the target's name in rows, the prompt, the seed, and the plan that makes it.

    ``variant`` keeps units apart in batches and timing (an A/B arm, an acceleration variant); ``scored_against``
    is the text its image is scored against (default its prompt); ``columns`` go into its row alone."""

    label: str
    prompt_id: str
    prompt: str
    category: str
    seed: int
    plan: Plan
    variant: str = ""
    scored_against: str | None = None
    columns: Mapping[str, Any] = field(default_factory=dict)  # more columns of its row (not in its PNG)

    def __post_init__(self) -> None:  # a clash of column names is refused before any image is made
        check_context(_extra_columns(self.plan.context, self.columns))


@dataclass(frozen=True)
class Batch:
    """Units that go through the pipeline in one call (they share ``plan``'s model, settings and toggles)."""

    batch_id: int
    round: int
    units: tuple[Unit, ...]

    @property
    def plan(self) -> Plan:
        return self.units[0].plan


@dataclass
class BatchResult:
    """A finished batch: its rows, and the records whose images the driver saves, one per row (None for an image
    that failed; none at all where no image was made)."""

    rows: list[Row]
    records: list[GenerationRecord] = field(default_factory=list)
    batch: Batch | None = None
    warmup_s: float | None = None  # the untimed warm-up call's time, where this batch's shape needed one


def _group_key(unit: Unit) -> tuple:
    plan = unit.plan
    acceleration = plan.acceleration.to_dict() if plan.acceleration else None
    return (unit.label, unit.variant, plan.model_id, plan.config.to_json(), repr(acceleration), id(plan.pipeline))


def _groups(units: Sequence[Unit]) -> dict[tuple, list[Unit]]:
    """Units by what they share in a batch (target, variant, model, settings, toggles), in order of first
    appearance."""
    groups: dict[tuple, list[Unit]] = {}
    for unit in units:
        groups.setdefault(_group_key(unit), []).append(unit)
    return groups


def sized_units(
    units: Sequence[Unit], runner: BatchRunner, recorded: Mapping[str, BatchProbe] | None = None
) -> tuple[list[Unit], list[BatchProbe]]:
    """``units`` with each ``batch_size="auto"`` replaced by the size a probe chose for its plan on ``runner``'s
    device (``batch_probe``; a probe in ``recorded``, a run's, is taken as it is), and the probes behind them.
    A shape the probe just ran needs no warm-up of its own."""
    recorded, probes, sizes = dict(recorded or {}), {}, {}
    for key, members in _groups(units).items():
        plan = members[0].plan
        if plan.config.batch_size != AUTO_BATCH_SIZE:
            continue
        probe_id = probe_key(plan, runner.load_device)
        probe = recorded.get(probe_id)
        if probe is None:
            before = known_probe(probe_id)
            jobs = [(u.prompt, u.seed) for u in members]
            probe = probe_batch_size(plan, jobs, device=runner.load_device, run_device=runner.device,
                                     cache=runner.cache)  # fmt: skip
            if probe is not before:  # the probe just ran each size it tried
                runner.mark_warmed(replace(members[0], plan=_sized(plan, probe.chosen)), probe.sizes)
        if probe.sizes:  # a probe that measured nothing (its plan failed) is not kept for a resume
            probes[probe_id] = probe
        sizes[key] = probe.chosen
    sized = [replace(u, plan=_sized(u.plan, sizes[k])) if (k := _group_key(u)) in sizes else u for u in units]
    return sized, list(probes.values())


def _sized(plan: Plan, size: int) -> Plan:
    return replace(plan, config=plan.config.replace(batch_size=size))


def plan_batches(units: Sequence[Unit], *, first_batch: int = 0, first_round: int = 0) -> list[Batch]:
    """Units in batches (see the module docstring): groups in order of first appearance, each split into
    batches of its plan's ``batch_size``; round r holds every group's r-th batch, starting at group r mod G.
    Batches and rounds are numbered from ``first_batch`` and ``first_round`` (a resumed study goes on from
    the numbers it had stored, so a batch is known by its number within the run). A size of "auto" is chosen
    first (``sized_units``)."""
    chunks = []
    for members in _groups(units).values():
        size = members[0].plan.config.batch_size
        if size == AUTO_BATCH_SIZE:
            raise ConfigError("batch_size 'auto' is chosen by a probe (engine.sized_units) before batches are planned")
        chunks.append([tuple(members[i : i + size]) for i in range(0, len(members), size)])
    batches: list[Batch] = []
    for round_ in range(max((len(c) for c in chunks), default=0)):
        for offset in range(len(chunks)):
            group = chunks[(round_ + offset) % len(chunks)]
            if round_ < len(group):
                batches.append(Batch(first_batch + len(batches), first_round + round_, group[round_]))
    return batches


@dataclass(frozen=True)
class RunnerSpec:
    """What a worker needs to build its own ``BatchRunner``: plain data (it crosses process boundaries).
    A worker builds the scorers of the per-image ``metrics`` from ``metric_options`` on its own device."""

    run_id: str
    settings_hash: str
    metrics: tuple[str, ...] = ()
    metric_options: MetricOptions = field(default_factory=MetricOptions)
    warmup: bool = True
    study: int | None = None  # the driver's process id: its workers' CPU time is the study's own, not "other"

    def runner(self, device: str | None, worker: str) -> BatchRunner:
        scorers = image_scorers(self.metrics, self.metric_options, device=device)
        return BatchRunner(self, scorers=scorers, device=device, cache=PipelineCache(), worker=worker)


class BatchRunner:
    """Runs batches in one process with its own pipelines (``cache``) and ``scorers`` (``ImageScorer``s),
    on ``device``. ``timed(batch)``, where given, is a context manager entered around each batch's timed
    generation only (the acceleration benchmark's denoiser clock).

    A batch that runs out of device memory (``device_memory``), generating or scoring, goes on in calls of half
    the size, down to one image: only an image that fails alone becomes an error row. The plan's later batches
    run in calls of the size that fitted, in this runner (with several workers, only the one that ran out: its
    images then differ from the others' by batch-mate rounding); it does not grow back. Rows say the batch size
    asked for (``batch_asked``: the plan's), the images in the call that made them (``batch_images``) and how
    many times the size was halved (``batch_splits``). Where the GPU reports its energy
    (``system_load.energy_counter``), rows carry the batch's energy per image (``energy_wh``, the whole
    board's: see ``system_load``)."""

    def __init__(self, spec: RunnerSpec, *, scorers=(), device=None, cache=default_cache, worker="main", timed=None):
        self.spec, self.scorers, self.device, self.cache, self.worker = spec, list(scorers), device, cache, worker
        self.timed = timed
        self.load_device = str(pick_device(device))
        self.device_name = device_name(self.load_device)
        self._warmed: set[tuple] = set()
        # per plan that ran out of memory: the size that fitted then, and how many halvings from the asked size
        self._fits: dict[tuple, tuple[int, int]] = {}
        self.energy = energy_counter(self.load_device)  # NVML's, on an NVIDIA GPU that reports it

    def __call__(self, batch: Batch) -> BatchResult:
        """Make ``batch``'s images in calls of the size that last fitted its plan (all of them at once until one
        runs out of memory): after an out-of-memory error the call is halved (rounding up) and the rest of the
        batch goes on in calls of that size, down to one image; an image that fails alone gets an error row."""
        result, units = BatchResult([], [], batch), batch.units
        key = _group_key(units[0])
        fitted, splits = self._fits.get(key, (len(units), 0))
        size, start = min(len(units), fitted), 0
        while start < len(units):
            part = units[start : start + size]
            outcome = self._attempt(batch, part, splits)
            if isinstance(outcome, BaseException):  # out of memory; the failed call's traceback is gone
                release_memory(self.load_device)
                if len(part) > 1:
                    size, splits = (len(part) + 1) // 2, splits + 1
                    continue
                outcome = self._failed(batch, part, splits, outcome), [None], None
            elif size < self._fits.get(key, (len(units) + 1, 0))[0] and splits:
                self._fits[key] = (size, splits)  # the size that fitted after running out: the plan's from now
            rows, records, warmup_s = outcome
            result.rows += rows
            result.records += records
            if warmup_s is not None:
                result.warmup_s = (result.warmup_s or 0.0) + warmup_s
            start += len(part)
        if all(record is None for record in result.records):
            result.records = []  # nothing made: a failed batch
        return result

    def mark_warmed(self, unit: Unit, sizes: Sequence[int]) -> None:
        """Take ``unit``'s plan as warmed up at batch ``sizes`` (a probe ran them): no warm-up call of its own."""
        self._warmed.update((*_group_key(unit), size) for size in sizes)

    def _attempt(self, batch: Batch, units: tuple[Unit, ...], splits: int):
        """``units`` made and scored in one call: (rows, records, warm-up seconds), or the out-of-memory error
        (without its traceback) where the device ran out, generating or scoring. Any other error in generating
        makes the units' rows failed ones."""
        plan = replace(units[0].plan, context={})  # each unit's own context is added below
        prompts, seeds = [u.prompt for u in units], [u.seed for u in units]
        out_of_memory = None
        # 1. Warm up, untimed, once per plan and batch shape.
        try:
            shape, warmup_s = (*_group_key(units[0]), len(units)), None
            if self.spec.warmup and shape not in self._warmed:
                warmup = replace(plan, config=plan.config.replace(steps=min(plan.config.steps, BATCH_WARMUP_STEPS)))
                start = time.perf_counter()
                run_plan(warmup, prompts, seeds, pairs=True, device=self.device, cache=self.cache)
                warmup_s = time.perf_counter() - start
                self._warmed.add(shape)
            # 2. Generate, timed, with the machine's load meanwhile.
            started = time.time()
            timed = self.timed(batch) if self.timed is not None else contextlib.nullcontext()
            with measure_load(self.load_device, study=self.spec.study, energy=self.energy) as load, timed:
                records = run_plan(plan, prompts, seeds, pairs=True, device=self.device, cache=self.cache)
        except WorkbenchError:
            raise
        except Exception as error:  # keep the study going; the rows record what happened
            if not is_out_of_memory(error):
                return self._failed(batch, units, splits, error), [None] * len(units), warmup_s
            out_of_memory = _without_traceback(error)
        if out_of_memory is not None:
            return out_of_memory
        # 3. Each image with its own unit's context (a route decision is per prompt) beside what the backend
        # recorded (a server's URL); score; rows.
        records = [replace(r, context={**r.context, **u.plan.context}) for r, u in zip(records, units, strict=True)]
        images = [r.image for r in records]
        against = [u.scored_against if u.scored_against is not None else u.prompt for u in units]
        try:
            scores = {
                column: values
                for scorer in self.scorers
                for column, values in scorer.score_columns(images, against).items()
            }
        except Exception as error:  # a scorer running out of memory at this size: the call is made again smaller
            if not is_out_of_memory(error):
                raise
            out_of_memory = _without_traceback(error)
        if out_of_memory is not None:
            return out_of_memory
        columns = {**self._batch_columns(batch, units, splits), "batch_started": started, "worker": self.worker}
        if load.energy_j is not None:  # where the device reports it: absent (not zero) elsewhere
            columns["energy_wh"] = load.energy_j / 3600 / len(units)
        rows = [
            Row.made(
                record, target=unit.label, run_id=self.spec.run_id, prompt_id=unit.prompt_id,
                category=unit.category, settings_hash=self.spec.settings_hash, variant=unit.variant,
                scores={column: values[i] for column, values in scores.items()},
                **_extra_columns(columns, load.values, unit.columns),
            )
            for i, (record, unit) in enumerate(zip(records, units, strict=True))
        ]  # fmt: skip
        return rows, records, warmup_s

    def _batch_columns(self, batch: Batch, units: tuple[Unit, ...], splits: int) -> dict[str, Any]:
        return {"batch_id": batch.batch_id, "batch_round": batch.round, "batch_images": len(units),
                "batch_asked": batch.plan.config.batch_size, "batch_splits": splits,
                "device_name": self.device_name}  # fmt: skip

    def _failed(self, batch: Batch, units: tuple[Unit, ...], splits: int, error: BaseException) -> list[Row]:
        columns = {**self._batch_columns(batch, units, splits), "worker": self.worker}
        return [
            Row.failed(
                error, target=u.label, run_id=self.spec.run_id, prompt_id=u.prompt_id, prompt=u.prompt,
                category=u.category, seed=u.seed, settings_hash=self.spec.settings_hash, config=u.plan.config,
                variant=u.variant, **_extra_columns(columns, u.plan.context, u.columns),
            )
            for u in units
        ]  # fmt: skip


def _without_traceback(error: BaseException) -> BaseException:
    """A copy of ``error`` that holds no frames (its traceback would keep the failed call's tensors alive)."""
    try:
        return type(error)(*error.args)
    except Exception:
        return RuntimeError(str(error))


# --- executors ------------------------------------------------------------------------------------

Sink = Callable[[BatchResult], None]


def _inline(batches: list[Batch], runner: BatchRunner, sink: Sink) -> None:
    for batch in batches:
        sink(runner(batch))


def _portable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling (to cross to the driver), else a WorkbenchError with its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return WorkbenchError(f"{type(error).__name__}: {error}")


def _process_worker(spec: RunnerSpec, device: str, threads: int, name: str, connection) -> None:
    """A local worker process: batches from its pipe until None, each answered by its result (or an error)."""
    torch.set_num_threads(threads)
    try:
        runner = spec.runner(device, name)
        while (batch := connection.recv()) is not None:
            connection.send(("done", runner(batch)))
    except BaseException as error:
        connection.send(("error", _portable(error)))


def _local_processes(batches: list[Batch], spec: RunnerSpec, devices: list[str], threads: int, sink: Sink) -> None:
    """One process per device, each with a pipe of its own (a worker killed mid-batch cannot leave a lock
    held that others wait on); the driver hands out batches in plan order as workers come free."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked; spawn everywhere alike
    workers = {}
    for index, device in enumerate(devices):
        name = f"worker{index}:{device}"
        here, there = context.Pipe()
        process = context.Process(target=_process_worker, args=(spec, device, threads, name, there), daemon=True)
        process.start()
        there.close()
        workers[here] = (name, process)
    todo, running, lost = list(reversed(batches)), {}, []

    def hand_out(connection) -> None:
        batch = todo.pop() if todo else None
        try:
            connection.send(batch)
            running[connection] = batch
        except OSError:  # the worker died between batches: its next batch goes to another
            running.pop(connection, None)
            if batch is not None:
                todo.append(batch)

    try:
        for connection in workers:
            hand_out(connection)
        while any(batch is not None for batch in running.values()):
            for connection in multiprocessing.connection.wait([c for c, b in running.items() if b is not None]):
                try:
                    kind, payload = connection.recv()
                except (EOFError, ConnectionError):  # the worker died: its batch is lost, the others go on
                    lost.append((workers[connection][0], running.pop(connection).batch_id))
                    continue
                if kind == "error":
                    raise payload
                sink(payload)
                hand_out(connection)
    finally:
        for connection, (_, process) in workers.items():
            process.join(timeout=10 if connection in running and running[connection] is None else 0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)
    _raise_lost(lost, {b.batch_id for b in todo})


class _RayWorker:
    """A Ray actor holding a ``BatchRunner``."""

    def __init__(self, spec: RunnerSpec, device: str, threads: int, name: str):
        torch.set_num_threads(threads)
        self.runner = spec.runner(device, name)

    def run(self, batch: Batch) -> BatchResult:
        return self.runner(batch)


def _ray_actors(batches: list[Batch], spec: RunnerSpec, count: int, threads: int, sink: Sink) -> None:
    from workbench.ray_cluster import connect, gpu_count

    ray = connect()
    gpus, cpus = gpu_count(), int(ray.cluster_resources().get("CPU", 0))
    on_gpu = gpus > 0
    capacity = gpus if on_gpu else cpus // threads
    if count > capacity:  # an actor that cannot be placed would wait for ever
        have = f"{gpus} GPU(s)" if on_gpu else f"{cpus} CPU(s), {threads} thread(s) per actor"
        raise ConfigError(f"the Ray cluster has room for {capacity} actor(s) ({have}), not workers={count}", "workers")
    spec = replace(spec, study=None)  # an actor may run on another machine: its own process is the study's
    actor = ray.remote(num_gpus=1 if on_gpu else 0, num_cpus=0 if on_gpu else threads)(_RayWorker)
    device = "cuda" if on_gpu else "cpu"
    handles = {f"actor{i}:{device}": actor.remote(spec, device, threads, f"actor{i}:{device}") for i in range(count)}
    todo, in_flight, lost, idle = list(reversed(batches)), {}, [], list(reversed(handles))
    try:
        while todo or in_flight:
            while todo and idle:
                name, batch = idle.pop(), todo.pop()
                in_flight[handles[name].run.remote(batch)] = (name, batch.batch_id)
            if not in_flight:
                break  # every actor is gone
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            name, batch_id = in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as error:  # the actor died: its batch is lost, the others go on
                lost.append((f"{name}: {str(error).strip().splitlines()[-1][:300]}", batch_id))
                continue
            except ray.exceptions.RayTaskError as error:
                raise error.as_instanceof_cause() from None
            idle.append(name)
            sink(result)
    finally:
        for handle in handles.values():
            with contextlib.suppress(Exception):
                ray.kill(handle)
    _raise_lost(lost, {b.batch_id for b in todo})


def _raise_lost(lost: list[tuple[str, int]], pending: set[int]) -> None:
    """``WorkerLost`` naming each worker that stopped (and why, where known) and its batch, if any was lost."""
    if lost or pending:
        died = "; ".join(f"{name} (batch {batch_id})" for name, batch_id in lost) or "every worker"
        raise WorkerLost(
            f"{died} stopped before finishing; {len(lost) + len(pending)} batch(es) not stored. Everything "
            "else is stored: run the study again (it resumes) to make the rest."
        )


WORKER_POOLS = ("local", "ray")  # where workers run: processes on this machine, or Ray actors


def worker_devices(workers: int | Sequence[str]) -> list[str]:
    """``workers`` as one device per worker: a count spread over the visible GPUs (or the CPU), or a list."""
    if isinstance(workers, int) and not isinstance(workers, bool):
        if workers < 1:
            raise ConfigError(f"workers must be a count >= 1 or a list of devices, got {workers!r}", "workers")
        gpus = torch.cuda.device_count()
        return [f"cuda:{i % gpus}" for i in range(workers)] if gpus else ["cpu"] * workers
    devices = [str(d) for d in workers] if not isinstance(workers, str) else []
    if not devices:
        raise ConfigError(f"workers must be a count >= 1 or a list of devices, got {workers!r}", "workers")
    for device in devices:
        pick_device(device)  # refuses a device that is not here
    return devices


def _extra_columns(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """A row's keyword columns from its ``parts`` (the batch's, the worker's, the machine load's, the unit's
    context and columns); a column two parts name is refused, naming it."""
    merged: dict[str, Any] = {}
    for part in parts:
        for column, value in part.items():
            if column in merged:
                raise ConfigError(f"the row column {column!r} is given twice (a context or a unit's columns)", column)
            merged[column] = value
    return merged


def check_workers(workers: int | Sequence[str], pool: str, threads: int | None) -> None:
    """Refuse, naming the value, a worker pool, worker count or device list, or thread count that cannot run."""
    if pool not in WORKER_POOLS:
        raise ConfigError(f"pool must be one of {list(WORKER_POOLS)}, got {pool!r}", "pool")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a whole number >= 1 (CPU threads per worker), got {threads!r}", "threads")
    if pool == "ray":
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"with pool='ray', workers must be a count >= 1, got {workers!r}", "workers")
    else:
        worker_devices(workers)


def execute(
    batches: list[Batch],
    spec: RunnerSpec,
    sink: Sink,
    *,
    workers: int | Sequence[str] = 1,
    pool: str = "local",
    runner: BatchRunner | None = None,
    threads: int | None = None,
) -> None:
    """Run ``batches``, giving each result to ``sink`` as it finishes (in this process, always).

    One local worker runs them here with ``runner``; more run in worker processes, one per device
    (``worker_devices``), or on ``count`` Ray actors (``pool="ray"``; $RAY_ADDRESS or a local Ray).
    ``threads``: CPU threads per worker (default: the cores shared out among the workers on the CPU).
    """
    check_workers(workers, pool, threads)
    if not batches:
        return
    sink = reported(sink, sum(len(b.units) for b in batches), lambda result: len(result.rows))  # to workbench run
    if pool == "local" and workers == 1:
        _inline(batches, runner or spec.runner(None, "main"), sink)
        return
    if any(b.plan.pipeline is not None for b in batches):
        raise ConfigError(
            "workers load their own pipelines: give model ids (or a Router), not pipeline objects", "workers"
        )
    if pool == "ray":
        _ray_actors(batches, spec, workers, worker_threads(workers, pool, threads), sink)
        return
    _local_processes(batches, spec, worker_devices(workers), worker_threads(workers, pool, threads), sink)


def worker_threads(workers: int | Sequence[str], pool: str, threads: int | None = None) -> int:
    """CPU threads per worker: ``threads``, else the cores shared out among the workers on the CPU (every Ray
    actor; the local workers whose device is the CPU)."""
    if threads:
        return threads
    sharing = workers if pool == "ray" else sum(d == "cpu" for d in worker_devices(workers)) or 1
    return max(1, (os.cpu_count() or 1) // sharing)


__getattr__ = renamed_attributes(
    __name__, {"WORKER_BACKENDS": "WORKER_POOLS", "WARMUP_STEPS": "BATCH_WARMUP_STEPS"}, globals()
)
