"""Finding the images under a folder: every entry is either an image file to decode or listed
with the reason it was passed over (unsupported type, hidden, broken link, symlink loop, pipe,
socket, device), so a run can say what it did not use. Pipes are never opened (that blocks)."""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from selfsight.errors import MissingInput, UserError

from .folder_cache import CACHE_DIRNAME

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


Skipped = list[tuple[str, str]]  # (file relative to the folder, reason), in path order

NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISCHR, "a character device"))


@dataclass
class FolderScan:
    """What :func:`scan_entries` found: the image files to decode (relative paths, sorted) and
    every other entry it passed over, with the reason."""

    files: list[str]
    skipped: Skipped


def scan_folder(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive, case-insensitive extensions), sorted; the
    entries passed over, and why, are :func:`scan_entries`'s ``skipped``."""
    root = Path(root).expanduser()
    return [root / rel for rel in scan_entries(root).files]


def scan_entries(root: str | Path) -> FolderScan:
    """Walk ``root`` once; every entry is either an image file to decode or listed as skipped.

    Passed over, each with its reason: hidden files and folders (names starting with ``.``:
    caches, ``.ipynb_checkpoints`` copies, macOS ``._`` resource forks; selfsight's own decode
    cache is left out of the list), files of other types (``.gif``, ``.heic``, ``.svg``, ...),
    broken symlinks, symlink loops, and named pipes, sockets and devices, which are never
    opened (opening a FIFO blocks). Symlinks to folders are followed after every real folder,
    each folder scanned once, so a loop ends and a second link to a folder is listed instead.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MissingInput(f"image folder {root} not found (or not a directory)")
    files: list[str] = []
    skipped: Skipped = []
    top = root.stat()
    seen: dict[tuple[int, int], str] = {(top.st_dev, top.st_ino): "."}
    folders: list[tuple[str, str]] = [(str(root), "")]  # (path, relative prefix) to list
    linked: deque[tuple[str, str, os.stat_result]] = deque()  # symlinks to folders, for later
    while folders or linked:
        if folders:
            path, prefix = folders.pop()
        else:
            path, rel, info = linked.popleft()
            where = _already_scanned(path, rel, info, seen)
            if where:
                skipped.append((rel, where))
                continue
            seen[(info.st_dev, info.st_ino)] = rel
            prefix = rel + "/"
        try:
            with os.scandir(path) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            skipped.append((prefix.rstrip("/") or ".",
                            f"folder cannot be listed ({error.strerror or error})"))
            continue
        for entry in entries:
            rel = prefix + entry.name
            kind = _classify(entry)
            if isinstance(kind, str):
                if kind:
                    skipped.append((rel, kind))
            elif stat.S_ISDIR(kind.st_mode):
                if entry.is_symlink():
                    linked.append((entry.path, rel, kind))
                elif (kind.st_dev, kind.st_ino) in seen:  # a bind mount of a scanned folder
                    skipped.append((rel, "the same folder as "
                                         f"{seen[(kind.st_dev, kind.st_ino)]!r}, already scanned"))
                else:
                    seen[(kind.st_dev, kind.st_ino)] = rel
                    folders.append((entry.path, rel + "/"))
            else:
                files.append(rel)
    files.sort()
    skipped.sort()
    if not files:
        raise UserError(
            f"no images found in {root}; accepted extensions: {', '.join(IMAGE_EXTENSIONS)}"
            + (f" ({len(skipped)} entries passed over: {listed(skipped)})" if skipped else ""))
    return FolderScan(files, skipped)


def listed(skipped: Skipped, limit: int = 3) -> str:
    """The first ``limit`` entries passed over as one line, ``file: reason; ...``, and how
    many more there are."""
    shown = "; ".join(f"{file}: {reason}" for file, reason in skipped[:limit])
    return shown + (f"; ... ({len(skipped) - limit} more)" if len(skipped) > limit else "")


def _classify(entry: os.DirEntry) -> os.stat_result | str:
    """The entry's stat (a folder, or an image file to decode), or why it is passed over
    ("" for selfsight's own cache folder, which is not listed)."""
    if entry.name.startswith("."):
        return "" if entry.name == CACHE_DIRNAME else "hidden (the name starts with '.')"
    try:
        info = entry.stat()  # follows symlinks; never opens the entry
    except FileNotFoundError:
        return "broken symlink: its target does not exist" if entry.is_symlink() else \
            "disappeared while the folder was scanned"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop: the link never reaches a file"
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISDIR(info.st_mode):
        return info
    for test, what in NOT_REGULAR:
        if test(info.st_mode):
            return f"not a regular file: {what}, never opened"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    suffix = Path(entry.name).suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        return (f"unsupported file type {suffix!r}" if suffix else "no file extension") + \
            f" (images read: {' '.join(IMAGE_EXTENSIONS)})"
    return info


def _already_scanned(path: str, rel: str, info: os.stat_result,
                     seen: dict[tuple[int, int], str]) -> str:
    """Why the symlink ``rel`` to a folder is not followed, or "" when it is to be."""
    here, there = os.path.realpath(os.path.dirname(path)), os.path.realpath(path)
    if here == there or here.startswith(there.rstrip(os.sep) + os.sep):
        return "symlink loop: the link points to a folder that holds it"
    target = (info.st_dev, info.st_ino)
    if target in seen:
        return f"symlink to a folder already scanned as {seen[target]!r}"
    return ""
