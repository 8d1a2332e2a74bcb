"""What else the machine was doing while something ran: the evidence that a timing can be trusted or not.

``LoadSample`` is taken around a block (a batch of images)::

    with measure_load(device) as load:
        ...                      # the timed work
    load.values  # {"load_avg_1m": ..., "cpu_busy_other": ..., "gpu_util": ...}

``cpu_busy_other`` is the share of the machine's CPU time (all cores) that other processes used during the
block: the machine's busy time minus the study's own (this process and its children, or a sharded study's
driver and all its workers), over the wall time times the cores. ``gpu_util`` is the
device's utilisation in percent from NVML (None without it); ``load_avg_1m`` the 1-minute load average.

Given an ``EnergyCounter`` (``energy_counter``: NVML's total energy counter of a CUDA device), the block's
energy in joules (``LoadSample.energy_j``), for blocks of ``MIN_ENERGY_SECONDS`` or longer. NVML reads the
whole board (its idle power and other processes' work included: two workers on one GPU each count it all) and
updates its counter coarsely, so a short block is not read at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil

__all__ = ["LOAD_COLUMNS", "MIN_ENERGY_SECONDS", "EnergyCounter", "LoadSample", "device_name", "energy_counter",
           "measure_load"]  # fmt: skip

LOAD_COLUMNS = ("load_avg_1m", "cpu_busy_other", "gpu_util")
MIN_ENERGY_SECONDS = 1.0  # blocks shorter than this get no energy reading
EnergyCounter = Callable[[], float]  # a device's energy used since a fixed point, in joules


@dataclass
class LoadSample:
    """The load around one block; ``values`` is filled when the block ends."""

    values: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(LOAD_COLUMNS))
    energy_j: float | None = None  # the device's energy over the block, where a counter was given and read


def _busy_seconds(times) -> float:
    """CPU seconds spent not idle (all cores together)."""
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _family_seconds(root: psutil.Process) -> dict[int, float]:
    """CPU seconds of ``root`` and each of its living descendants, by process id."""
    seconds = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            seconds[process.pid] = times.user + times.system
        except psutil.Error:  # gone meanwhile
            continue
    return seconds


def _gpu_util(device: str | None) -> float | None:
    """The CUDA device's utilisation (percent) through NVML, or None (no CUDA device, or no NVML)."""
    if not device or not str(device).startswith("cuda"):
        return None
    try:
        import torch

        return float(torch.cuda.utilization(device))
    except Exception:  # NVML missing or unusable: utilisation is unknown, not an error
        return None


def energy_counter(device: str | None) -> EnergyCounter | None:
    """NVML's total energy counter of the CUDA ``device`` (``nvmlDeviceGetTotalEnergyConsumption``: millijoules
    since the driver loaded; Volta and later), in joules; None where there is none: not a CUDA device, no
    ``nvidia-ml-py``, or a board or virtual machine that does not report it."""
    if not device or not str(device).startswith("cuda"):
        return None
    try:
        import pynvml
        import torch

        pynvml.nvmlInit()
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # refused on boards without the counter
    except Exception:  # no NVML, or no counter: energy is unknown, not zero
        return None
    return lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000.0


def _read(counter: EnergyCounter | None) -> float | None:
    """The counter's reading, or None (no counter, or it failed this time: energy unknown, the batch fine)."""
    try:
        return counter() if counter is not None else None
    except Exception:
        return None


def device_name(device: str) -> str:
    """What the hardware is called: the CUDA device's name ("NVIDIA H200"), else the device type ("cpu")."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    return str(device).partition(":")[0]


@contextmanager
def measure_load(
    device: str | None = None, *, study: int | None = None, energy: EnergyCounter | None = None
) -> Iterator[LoadSample]:
    """Sample the machine's load over the block (see the module docstring). ``study``: the process id at the
    root of the work being measured (a sharded study's driver), whose descendants, this process's sibling
    workers among them, are not "other" processes; default this process. ``energy``: the device's counter."""
    sample = LoadSample()
    root = psutil.Process(study) if study else psutil.Process()
    start_energy = _read(energy)
    start_wall, start_busy, start_own = time.perf_counter(), _busy_seconds(psutil.cpu_times()), _family_seconds(root)
    try:
        yield sample
    finally:
        wall = time.perf_counter() - start_wall
        end_energy = _read(energy) if start_energy is not None and wall >= MIN_ENERGY_SECONDS else None
        sample.energy_j = end_energy - start_energy if end_energy is not None else None
        busy = _busy_seconds(psutil.cpu_times()) - start_busy
        own = sum(seconds - start_own.get(pid, 0.0) for pid, seconds in _family_seconds(root).items())
        capacity = wall * (psutil.cpu_count() or 1)
        other = min(max((busy - own) / capacity, 0.0), 1.0) if capacity > 0 else None
        sample.values = {
            "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "cpu_busy_other": round(other, 3) if other is not None else None,
            "gpu_util": _gpu_util(device),
        }
