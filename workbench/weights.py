"""What a checkpoint is, by content: a hash of its files, so the same weights under another path or hub id are
the same checkpoint, and changed weights under the same id are not.

A file's hash costs little: a file in the Hugging Face cache is named by it (the blob's name: the sha256 of a
large file), and a local file's sha256 is computed once and kept by path, inode, size and modification time under
``cache_root()/file-hashes.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from workbench.resources import cache_root

__all__ = ["checkpoint_files", "checkpoint_hash", "file_hash"]

TOYWORLD_WEIGHTS = Path(__file__).parent / "toyworld" / "weights"
_SKIPPED = {".md", ".lock", ".partial"}  # model cards and download leftovers are not the checkpoint
_memo: dict[str, tuple[int, int, int, str]] = {}


def checkpoint_files(checkpoint: str) -> Path | None:
    """The file or folder a checkpoint id names: ``toyworld/<name>``, a local path, or a hub id in the local
    Hugging Face cache; None where it is none of these here (a hub id not downloaded)."""
    if checkpoint.startswith("toyworld/"):
        folder = TOYWORLD_WEIGHTS / checkpoint.removeprefix("toyworld/")
        return folder if folder.exists() else None
    path = Path(checkpoint).expanduser()
    if path.exists():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(checkpoint, local_files_only=True))
    except Exception:  # not a hub id, or not in the cache
        return None


def checkpoint_hash(checkpoint: str) -> str | None:
    """The sha256 of a checkpoint's files (their paths inside it and each file's hash), or None where its files
    are not here."""
    root = checkpoint_files(checkpoint)
    if root is None:
        return None
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if _counts(p, root))
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(root) if file != root else file.name}:{file_hash(file)}\n".encode())
    return digest.hexdigest()


def _counts(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return path.is_file() and path.suffix not in _SKIPPED and not any(p.startswith(".") for p in parts)


def file_hash(path: Path) -> str:
    """A file's sha256: for a large file in the Hugging Face cache its blob's name (a small file's blob is named
    by git's SHA-1, so it is hashed); else computed once and kept by path, inode, size and modification time."""
    real = Path(os.path.realpath(path))
    if real != path.absolute() and real.parent.name == "blobs" and len(real.name) == 64:
        return real.name
    stat = real.stat()
    key, seen = str(real), [stat.st_ino, stat.st_size, stat.st_mtime_ns]
    cached = _memo.get(key) or _disk_cache().get(key)
    if cached and list(cached[:3]) == seen:
        return cached[3]
    sha = hashlib.sha256()
    with open(real, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    _memo[key] = (*seen, sha.hexdigest())
    _save_disk_cache(key, _memo[key])
    return sha.hexdigest()


def _disk_cache() -> dict[str, list]:
    file = cache_root() / "file-hashes.json"
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return {}


def _save_disk_cache(key: str, entry: tuple[int, int, int, str]) -> None:
    """Add one entry; a cache that cannot be written only costs a hash next time."""
    file = cache_root() / "file-hashes.json"
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        partial = file.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps({**_disk_cache(), key: list(entry)}))
        partial.replace(file)
    except OSError:
        pass
