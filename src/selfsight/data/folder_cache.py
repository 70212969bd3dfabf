"""The on-disk cache of a folder's decoded images: one uint8 ``.npy`` plus a JSON index.

A folder is decoded once; later loads memory-map the array. The cache is keyed by everything
that determines its bytes (folder, file sizes and mtimes, size, channel request, decoder
version), written atomically, and older caches of the same load are pruned once replaced.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
from tqdm import tqdm

import selfsight.files as files
from selfsight.errors import UserError

from .decode import safe_decode

CACHE_DIRNAME = ".selfsight-cache"

# Bump when decoding changes, so caches written by older code are never trusted.
_CACHE_VERSION = 1
_DECODE_CHUNK = 256  # files handed to the thread pool at a time, bounding queued results
_INDEX_ROOM = 1 << 20  # bytes kept free beyond the array: the .npy header and the index


def default_cache_dir(root: Path) -> Path:
    """``<root>/.selfsight-cache`` when writable (travels with the data), else the user cache."""
    local = root / CACHE_DIRNAME
    try:
        local.mkdir(exist_ok=True)
        if os.access(local, os.W_OK):
            return local
    except OSError:
        pass
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "selfsight"


def cache_paths(
    cache: Path, root: Path, relative: Sequence[str], size: int, channels: int | None
) -> tuple[Path, Path]:
    """(array ``.npy``, index ``.json``) in ``cache`` for this load of ``root``."""
    stem = f"{root.resolve().name or 'root'}-{_cache_key(root, relative, size, channels)}"
    return cache / f"{stem}.npy", cache / f"{stem}.json"


def _cache_key(
    root: Path, relative: Sequence[str], size: int, channels: int | None
) -> str:
    """Hash of everything that determines the decoded bytes; any change means a new cache."""
    entries = []
    for rel in relative:
        try:
            stat = (root / rel).stat()
            entries.append([rel, stat.st_size, stat.st_mtime_ns])
        except OSError:
            entries.append([rel, -1, -1])  # decoding will skip it with the real reason
    payload = [_CACHE_VERSION, str(root.resolve()), size, str(channels or "auto"), entries]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:24]


def load_cache(array_path: Path, index_path: Path, size: int) -> tuple[np.ndarray, dict] | None:
    """The cached (memmap, index), or None when absent, incomplete or not matching."""
    if not (array_path.is_file() and index_path.is_file()):
        return None
    try:
        index = json.loads(index_path.read_text())
        images = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    kept = len(index.get("files", []))
    if index.get("version") != _CACHE_VERSION or images.dtype != np.uint8:
        return None
    if images.ndim != 4 or images.shape[0] < kept or kept == 0:
        return None
    if images.shape[1:] != (size, size, index.get("channels")):
        return None
    return images[:kept], index


def _decode_all(
    root: Path, relative: Sequence[str], size: int, channels: int, out: np.ndarray, progress: bool
) -> tuple[list[str], list[list[str]]]:
    """Decode into ``out`` row by row; returns (kept relative paths, [[file, reason], ...]).

    Kept rows are packed at the front, so skipped files leave only unused rows at the end.
    """
    kept: list[str] = []
    skipped: list[list[str]] = []
    bar = tqdm(
        total=len(relative), desc=f"decoding {root.name}", unit="img", disable=not progress
    )
    # PIL releases the GIL while decoding and resizing, so threads give real parallelism.
    with bar, ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for chunk in _chunks(relative, _DECODE_CHUNK):
            paths = [root / rel for rel in chunk]
            results = pool.map(functools.partial(safe_decode, size=size, channels=channels), paths)
            for rel, (array, reason) in zip(chunk, results):
                if array is None:
                    skipped.append([rel, reason])
                else:
                    out[len(kept)] = array
                    kept.append(rel)
                bar.update(1)
    return kept, skipped


def _chunks(items: Sequence[str], n: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), n):
        yield items[start : start + n]


def write_cache(
    array_path: Path,
    index_path: Path,
    root: Path,
    relative: Sequence[str],
    size: int,
    channels: int,
    request: str,
    progress: bool,
) -> None:
    """Decode everything into a temporary array, ``os.replace`` it into place, then write the
    index (atomically too).

    The array goes first and the index last; an array without its index is never trusted, so
    a decode killed at any point leaves nothing that a later load would believe, and the next
    write removes the killed one's temporary (``files.remove_stale_temporaries``: its writer's
    lock is gone). A full disk is one line naming the cache folder, before anything is written
    when the free space is visibly short, never a SIGBUS (see ``_create_array``); any failure
    removes the temporary. Raises ValueError naming the folder when not one file could be
    decoded.
    """
    shape = (len(relative), size, size, channels)
    needed = int(np.prod(shape)) + _INDEX_ROOM + 200 * len(relative)  # array, header, index
    tmp_array = array_path.with_name(f".{array_path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        array_path.parent.mkdir(parents=True, exist_ok=True)
        files.remove_stale_temporaries(array_path.parent, "*.tmp")  # older names had no dot
        files.check_free_space(array_path.parent, needed,
                               f"the decoded-image cache of {root} ({shape[0]} images)")
        with files.locked_temporary(tmp_array) as handle:
            out = _create_array(tmp_array, handle, shape)
            kept, skipped = _decode_all(root, relative, size, channels, out, progress)
            out.flush()
            del out  # unmap before the rename
            if not kept:
                details = "; ".join(f"{file}: {reason}" for file, reason in skipped[:5])
                raise UserError(f"no readable images in {root}: all {len(relative)} failed "
                                f"to decode ({details})")
            os.replace(tmp_array, array_path)
    except OSError as error:
        translated = files.disk_error(error, array_path, needed)
        if translated is None:
            raise
        raise translated from error
    index = {
        "version": _CACHE_VERSION,
        "root": str(root.resolve()),
        "size": size,
        "channels": channels,
        "request": request,
        "files": kept,
        "skipped": skipped,
    }
    files.write_text(index_path, json.dumps(index))
    _prune_stale(index_path, index)


def _create_array(path: Path, handle: IO[bytes], shape: tuple[int, ...]) -> np.memmap:
    """A writable uint8 ``.npy`` memmap of ``shape`` at ``path`` (open as ``handle``), with
    every block of it allocated on the disk before a byte is stored.

    numpy makes the file sparse; a store through the map into a hole needs a new block, and
    when the disk is full the kernel can only refuse it with SIGBUS: the process dies with exit
    135 and no message. ``files.reserve_space`` allocates the blocks now instead, so a full
    disk is an OSError ENOSPC here (made one line by the caller), not a crash mid-decode. Where
    the file system cannot preallocate, the caller's ``check_free_space`` is the guard."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    files.reserve_space(handle, path.stat().st_size)
    return out


def _prune_stale(index_path: Path, index: dict) -> None:
    """Delete older caches of the same folder, size and channel request.

    Their files have since changed, so they can never be hit again, and a cache of a large
    folder is large. Caches for other sizes or channel counts are kept: they are still valid.
    """
    same = ("version", "root", "size", "request")
    for other in index_path.parent.glob("*.json"):
        if other == index_path:
            continue
        try:
            old = json.loads(other.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(old, dict) and all(old.get(k) == index[k] for k in same):
            other.unlink(missing_ok=True)  # index first: a lone array is never trusted
            other.with_suffix(".npy").unlink(missing_ok=True)
