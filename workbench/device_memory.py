"""A device's memory: telling "out of memory" from other errors, giving memory back after one, and how much
a batch may use.

``torch.OutOfMemoryError`` is what CUDA and MPS raise; a CPU allocation that fails is a ``RuntimeError`` naming
the allocator. The Linux OOM killer ends a process without any exception: nothing can catch it (a worker
process killed so is reported as lost, and a rerun makes its batch).
"""

from __future__ import annotations

import gc

import psutil
import torch

__all__ = ["MEMORY_SHARE", "OutOfMemoryError", "is_out_of_memory", "memory_budget_mb", "release_memory"]

OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch.OutOfMemoryError: 2.5+

# The share of what is free that a batch size chosen by probing may fill, per device type.
MEMORY_SHARE = {"cuda": 0.8, "mps": 0.5, "cpu": 0.5}
_ALLOCATION_FAILED = ("DefaultCPUAllocator: can't allocate memory", "out of memory", "not enough memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says the device ran out of memory (and a smaller batch may fit)."""
    if isinstance(error, OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(text in str(error) for text in _ALLOCATION_FAILED)


def release_memory(device: torch.device | str) -> None:
    """Collect garbage and hand the device's cached blocks back (call it outside the ``except`` block: a live
    traceback holds the failed call's tensors)."""
    gc.collect()
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.empty_cache()
    elif kind == "mps":
        torch.mps.empty_cache()


def memory_budget_mb(device: torch.device | str) -> float | None:
    """The most memory (MiB, as ``PeakMemory`` measures it on ``device``) a batch may reach: what is in use now
    plus ``MEMORY_SHARE`` of what is free (free GPU memory on CUDA, torch's unused cache included; the driver's
    recommended limit on MPS; available RAM on the CPU); None where it cannot be told."""
    device = torch.device(device)
    share = MEMORY_SHARE.get(device.type)
    if share is None:
        return None
    if device.type == "cuda":  # free: the driver's, and what torch holds in its cache but does not use
        allocated = torch.cuda.memory_allocated(device)
        free = torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device) - allocated
        return (allocated + share * free) / 2**20
    if device.type == "mps":
        used = torch.mps.driver_allocated_memory()
        return (used + share * max(torch.mps.recommended_max_memory() - used, 0)) / 2**20
    return (psutil.Process().memory_info().rss + share * psutil.virtual_memory().available) / 2**20
