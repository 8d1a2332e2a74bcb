"""A disk cache of fitted classifiers, so that a new process routes its first prompt without refitting.

A fitted classifier is plain arrays (coefficients, centroids, the training prompts' embeddings) and a little
JSON, kept in one ``.npz`` per key under ``cache_dir()`` (``$WORKBENCH_CACHE_DIR/routing``, else
``$XDG_CACHE_HOME/t2i-workbench/routing``, else ``~/.cache/t2i-workbench/routing``). The key is a hash of
everything the fit depends on: the training prompts and labels, the keyword features' layout and weights,
the settings, the sentence model's files, the versions of the packages that compute it, and the source of
the modules that fit it. Any change gives a new key, so a stale entry is never read; old entries are pruned.

Reads trust nothing: a file that is truncated, corrupt, of another format or for another key is ignored
(the caller refits and overwrites it), and it is never unpickled. Writes go to a temporary file that
replaces the entry in one step, so a reader sees the old entry or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from workbench.resources import cache_root

__all__ = ["FORMAT", "cache_dir", "cache_key", "load_entry", "save_entry"]

FORMAT = 1  # the entries' layout: raise it when the arrays or the meta change meaning
KEEP = 16  # entries kept per folder (the newest); each is about 2 MB
_PACKAGES = ("t2i-workbench", "numpy", "scikit-learn", "tokenizers", "safetensors")
_SOURCES = ("classifiers.py", "embeddings.py", "cache.py")  # the code that computes a fit and reads it back


def cache_dir() -> Path:
    """Where fitted classifiers are kept: ``routing`` in the workbench's cache folder (``resources.cache_root``)."""
    return cache_root() / "routing"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def cache_key(parts: Mapping[str, Any]) -> str:
    """sha256 of ``parts`` (JSON-able) with the format, the package versions and this code's source."""
    here = Path(__file__).parent
    code = hashlib.sha256()
    for name in _SOURCES:
        code.update((here / name).read_bytes())
    payload = {
        "format": FORMAT,
        "versions": {package: _version(package) for package in _PACKAGES},
        "code": code.hexdigest(),
        **parts,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def _path(key: str, folder: Path, kind: str) -> Path:
    return folder / f"{kind}-{key[:40]}.npz"


def load_entry(
    key: str, *, kind: str, folder: Path | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The entry stored under ``key`` as (meta, arrays), or None when there is none or it cannot be trusted
    (unreadable, truncated, of another format or key). The caller checks the arrays' shapes against what
    it expects."""
    path = _path(key, cache_dir() if folder is None else folder, kind)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}  # reading checks each member's CRC
        meta = json.loads(str(arrays.pop("meta")[()]))
        if not isinstance(meta, dict) or meta.get("key") != key or meta.get("format") != FORMAT:
            return None
        if not all(np.all(np.isfinite(a)) for a in arrays.values() if a.dtype.kind == "f"):
            return None
    except FileNotFoundError:
        return None
    except Exception:  # anything wrong with the file: ignored and rebuilt, never trusted
        return None
    return meta, arrays


def save_entry(
    key: str, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray], *, kind: str, folder: Path | None = None
) -> Path | None:
    """Store an entry atomically (a temporary file, then ``os.replace``); the path, or None when the folder
    cannot be written (routing goes on without a cache). Older entries beyond the newest ``KEEP`` are pruned."""
    folder = cache_dir() if folder is None else folder
    path = _path(key, folder, kind)
    temporary = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps({**meta, "key": key, "format": FORMAT})), **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
        temporary = None
    except OSError:
        return None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    _prune(folder, kind, keep=path)
    return path


def _prune(folder: Path, kind: str, keep: Path) -> None:
    """Remove all but the newest ``KEEP`` entries, and temporary files of writes that died an hour ago."""
    with contextlib.suppress(OSError):
        entries = sorted(folder.glob(f"{kind}-*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in [p for p in entries if p != keep][KEEP - 1 :]:
            with contextlib.suppress(OSError):
                old.unlink()
        for stale in folder.glob(f".{kind}-*.tmp"):
            with contextlib.suppress(OSError):
                if stale.stat().st_mtime < time.time() - 3600:
                    stale.unlink()
