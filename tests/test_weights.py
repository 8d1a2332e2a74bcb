"""A checkpoint is known by the sha256 of its files, wherever they are: a hub cache snapshot and a local copy
of the same bytes are the same checkpoint."""

import hashlib
import os

from workbench.weights import checkpoint_hash, file_hash


def _hub_snapshot(root, files: dict[str, bytes], blob_name) -> None:
    """A Hugging Face cache layout: snapshots/<rev>/<name> links to blobs/<blob_name(bytes)>."""
    (root / "blobs").mkdir(parents=True)
    (root / "snapshots" / "rev").mkdir(parents=True)
    for name, data in files.items():
        blob = root / "blobs" / blob_name(data)
        blob.write_bytes(data)
        os.symlink(blob, root / "snapshots" / "rev" / name)


def test_a_hub_snapshot_and_a_local_copy_of_the_same_bytes_are_one_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    files = {"config.json": b'{"a": 1}', "model.safetensors": b"\x00" * 4096}
    big = {"model.safetensors"}

    def blob_name(data: bytes) -> str:  # the hub's: sha256 for LFS (large) files, git's SHA-1 for small ones
        if any(files[name] == data for name in big):
            return hashlib.sha256(data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    _hub_snapshot(tmp_path / "hub", files, blob_name)
    local = tmp_path / "local"
    local.mkdir()
    for name, data in files.items():
        (local / name).write_bytes(data)
    snapshot = tmp_path / "hub" / "snapshots" / "rev"
    assert file_hash(snapshot / "config.json") == hashlib.sha256(files["config.json"]).hexdigest()
    assert checkpoint_hash(str(snapshot)) == checkpoint_hash(str(local))
    (local / "config.json").write_bytes(b'{"a": 2}')
    assert checkpoint_hash(str(snapshot)) != checkpoint_hash(str(local))


def test_a_file_replaced_with_the_same_size_and_time_is_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    file = tmp_path / "weights.bin"
    file.write_bytes(b"a" * 64)
    first, stat = file_hash(file), file.stat()
    replacement = tmp_path / "other.bin"
    replacement.write_bytes(b"b" * 64)
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    replacement.replace(file)  # another inode under the old path, size and modification time (as cp -p leaves)
    assert file_hash(file) == hashlib.sha256(b"b" * 64).hexdigest() != first
