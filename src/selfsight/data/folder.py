"""A folder of image files, loaded as an :class:`ImageSet` and decoded only once.

Finds the images under a folder, labels them (first-level sub-folders, or a ``file,label``
CSV), and serves them from the decoded-array cache (:mod:`.folder_cache`), which is filled by
:mod:`.decode`. Unreadable files are skipped with their reason and can be reported per run.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from selfsight.errors import MissingInput, UserError
from selfsight.file_names import display_name, native_name, portable_name
from selfsight.files import write_text
from selfsight.run_folder import RunFolder

from .decode import auto_channels, decode_image, open_image
from .folder_cache import (
    cache_paths,
    default_cache_dir,
    load_cache,
    write_cache,
)
from .imageset import ImageSet
from .scan import IMAGE_EXTENSIONS, NOT_REGULAR, Skipped, scan_entries, scan_folder

# decode_image and open_image are re-exported: callers have always imported them from here.
__all__ = [
    "IMAGE_EXTENSIONS",
    "decode_image",
    "default_folder_size",
    "load_folder",
    "open_image",
    "read_resized",
    "scan_entries",
    "scan_folder",
    "write_skipped_report",
]

# --------------------------------------------------------------------------------------------
# Labels


def _subfolder_classes(relative: Sequence[str]) -> tuple[np.ndarray | None, list[str] | None]:
    """Labels from first-level sub-folders, when every image has one and there are >= 2."""
    parts = [rel.split("/") for rel in relative]
    if not parts or any(len(p) < 2 for p in parts):
        return None, None
    classes = sorted({p[0] for p in parts})
    if len(classes) < 2:
        return None, None
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index[p[0]] for p in parts], dtype=np.int64), classes


def _read_label_csv(csv_path: Path, root: Path) -> tuple[dict[str, str], Skipped]:
    """``file,label`` rows (file relative to root) -> ({posix relative path: label}, skipped).

    The CSV must be UTF-8; a file name that is not UTF-8 is written with ``\\xHH`` escapes
    (:func:`selfsight.files.portable_name`, as selfsight's own CSVs write it). A file must lie
    inside ``root`` (an absolute path is fine when it does). The first row is a header when
    its first cell neither exists under root nor has an image extension, so ``file,label``
    headers are skipped but a missing ``x.jpg`` is still an error. A listed entry that is not
    a file (a folder, a FIFO, a broken symlink) is skipped and listed with the reason.
    """
    if not csv_path.is_file():
        raise MissingInput(f"labels CSV {csv_path} not found")
    raw = csv_path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UserError(
            f"labels CSV {csv_path} is not UTF-8 text: byte 0x{raw[error.start]:02x} on line "
            f"{line} ({error.reason}); save it as UTF-8 (a file name that is not UTF-8 is "
            "written with \\xHH escapes, as selfsight writes it)") from None
    table: dict[str, str] = {}
    skipped: Skipped = []
    for number, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise UserError(f"{csv_path} row {number}: expected 'file,label', got {row}")
        rel, exists = _listed_file(cells[0], root)
        if not exists and number == 1 and Path(cells[0]).suffix.lower() not in IMAGE_EXTENSIONS:
            continue  # header row
        if rel is None:
            raise UserError(f"{csv_path} row {number}: file {cells[0]!r} is outside the "
                            f"image folder {root}")
        if not exists:
            raise MissingInput(
                f"{csv_path} row {number}: file {cells[0]!r} not found under {root}"
            )
        if rel in table or any(rel == file for file, _ in skipped):
            raise UserError(f"{csv_path} row {number}: {cells[0]!r} is listed twice")
        reason = _not_a_file(root / rel)
        if reason:
            skipped.append((rel, reason))
        else:
            table[rel] = cells[1]
    if not table:
        if skipped:
            raise UserError(f"labels CSV {csv_path} lists no readable files: "
                            f"{skipped[0][0]}: {skipped[0][1]}")
        raise UserError(f"labels CSV {csv_path} lists no files")
    return table, sorted(skipped)


def _listed_file(cell: str, root: Path) -> tuple[str | None, bool]:
    """(posix path relative to ``root`` or None when outside it, whether it exists) of a CSV
    cell: the name as :func:`~selfsight.files.native_name` reads it, or literally."""
    bases = list(dict.fromkeys((os.path.abspath(root), os.path.realpath(root))))
    first: tuple[str | None, bool] | None = None
    for name in dict.fromkeys((native_name(cell), cell)):
        rel = None
        for base in bases:
            inside = os.path.relpath(os.path.normpath(os.path.join(base, name)), base)
            if inside != os.curdir and inside != os.pardir and \
                    not inside.startswith(os.pardir + os.sep):
                rel = Path(inside).as_posix()
                break
        found = (rel, rel is not None and os.path.lexists(root / rel))
        if found[1]:
            return found
        first = first or found
    return first


def _not_a_file(path: Path) -> str:
    """Why ``path`` is not a regular file that can be decoded; "" when it is one."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "broken symlink: its target does not exist"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop: the link never reaches a file"
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISDIR(mode):
        return "a folder, not an image file"
    for test, what in NOT_REGULAR:
        if test(mode):
            return f"not a regular file: {what}, never opened"
    return "" if stat.S_ISREG(mode) else "not a regular file"


# --------------------------------------------------------------------------------------------
# Public loader


def default_folder_size(root: str | Path, largest: int = 64, smallest: int = 16,
                        sample: int = 64) -> int:
    """The working size for a folder when none is given: the median short side of (a spread
    sample of) its images, within [smallest, largest]. A folder of 32-px images is then not
    upscaled to 64 px, which would cost 4x the compute and add nothing. Reads headers only."""
    files = scan_folder(Path(root).expanduser())
    sides = []
    for path in files[:: max(1, len(files) // sample)][:sample]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except (OSError, ValueError):  # unreadable: load_folder skips and reports it
            continue
    if not sides:
        return largest
    return int(np.clip(np.median(sides), smallest, largest))


def load_folder(
    root: str | Path,
    size: int = 64,
    channels: int | None = None,
    cache_dir: str | Path | None = None,
    labels: str | Path | None = None,
    progress: bool = True,
) -> ImageSet:
    """Load every image under ``root`` as (N, size, size, channels) uint8, decoding only once.

    ``channels=None`` picks 1 when the images are grayscale-like, else 3. ``labels=None`` takes
    classes from first-level sub-folders (when there are at least two); a CSV path of
    ``file,label`` rows loads only the files it lists, labelled by the sorted label names.
    Unreadable files are skipped and listed in ``ImageSet.skipped`` as (path, reason).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MissingInput(f"image folder {root} not found (or not a directory)")
    if size < 1:
        raise UserError(f"size must be a positive number of pixels, got {size}")
    if channels not in (None, 1, 3):
        raise UserError(f"channels must be None, 1 or 3, got {channels}")
    if labels is not None:
        table, passed_over = _read_label_csv(Path(labels).expanduser(), root)
        relative = sorted(table)
    else:
        scan = scan_entries(root)
        table, relative, passed_over = None, scan.files, scan.skipped

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(root)
    array_path, index_path = cache_paths(cache, root, relative, size, channels)

    loaded = load_cache(array_path, index_path, size)
    if loaded is None:
        # channels=None is part of the key as "auto", so a cache hit never re-reads any file.
        chosen = channels or auto_channels([root / rel for rel in relative])
        # Identifies "the same load" for pruning: a CSV subset must not evict the full folder.
        selection = str(Path(labels).expanduser().resolve()) if labels is not None else "scan"
        request = f"channels={channels or 'auto'};files={selection}"
        write_cache(array_path, index_path, root, relative, size, chosen, request, progress)
        loaded = load_cache(array_path, index_path, size)
        if loaded is None:  # only if something outside this process broke the fresh cache
            raise OSError(f"decode cache {array_path} could not be read back")
    images, index = loaded
    return _build_imageset(root, images, index, table, passed_over)


def _build_imageset(
    root: Path, images: np.ndarray, index: dict, table: dict[str, str] | None,
    passed_over: Skipped,
) -> ImageSet:
    kept: list[str] = index["files"]
    if table is not None:
        classes = sorted(set(table.values()))
        lookup = {name: i for i, name in enumerate(classes)}
        labels = np.array([lookup[table[rel]] for rel in kept], dtype=np.int64)
    else:
        labels, classes = _subfolder_classes(kept)
    return ImageSet(
        images=images,
        labels=labels,
        files=[str(root / rel) for rel in kept],
        classes=classes,
        # Entries the scan (or the CSV) passed over, then files that failed to decode.
        skipped=[(str(root / file), reason)
                 for file, reason in sorted([*passed_over, *map(tuple, index["skipped"])])],
        name=root.resolve().name or str(root),
    )


def write_skipped_report(imageset: ImageSet, run_dir: Path) -> Path | None:
    """Write ``run_dir/skipped_files.json`` listing skipped inputs; None when nothing was.
    File names follow :func:`selfsight.files.portable_name`."""
    if not imageset.skipped:
        return None
    report = {
        "count": len(imageset.skipped),
        "files": [{"file": portable_name(file), "reason": reason}
                  for file, reason in imageset.skipped],
    }
    return write_text(RunFolder(run_dir).skipped_files, json.dumps(report, indent=2) + "\n")


@dataclass
class ResizedFolder:
    """A folder read for per-pixel outputs that go back to each file's own size."""

    images: np.ndarray  # (N, S, S, C) uint8 at the working size, each image letterboxed
    files: list[str]  # relative to the folder
    sizes: list[tuple[int, int]]  # each file's own (H, W)
    skipped: list[dict[str, str]]  # {"file", "error"}: entries passed over or unreadable
    boxes: list[tuple[int, int, int, int]]  # (top, left, height, width) of each image in its square

    def unbox(self, index: int, planes: np.ndarray) -> np.ndarray:
        """(..., S, S) maps of image ``index`` -> (..., h, w): the image's own part of them."""
        top, left, height, width = self.boxes[index]
        return planes[..., top:top + height, left:left + width]

    def own_image(self, index: int) -> np.ndarray:
        """Image ``index`` at the working scale without its black border: (h, w, C)."""
        top, left, height, width = self.boxes[index]
        return self.images[index, top:top + height, left:left + width]


def letterbox_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """Where an (H, W) image goes in a ``size`` square once its longer side is ``size``:
    (top, left, height, width), centred."""
    scale = size / max(height, width)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    return (size - h) // 2, (size - w) // 2, h, w


def read_resized(root: str | Path, size: int, channels: int, progress: bool = True
                 ) -> ResizedFolder:
    """Every readable image under ``root`` letterboxed into a ``size`` square: its longer side
    resized to ``size``, its aspect ratio kept, the rest black (not cropped, unlike
    :func:`load_folder`, and not squashed), with its own size and its box in the square, so masks
    drawn on it map back onto the whole file; an unreadable file, and every entry the scan
    passed over, is listed with its error."""
    root = Path(root)
    scan = scan_entries(root)
    images, files, sizes, boxes = [], [], [], []
    skipped = [{"file": rel, "error": reason} for rel, reason in scan.skipped]
    for rel in tqdm(scan.files, desc="read images", unit="img", disable=not progress):
        try:
            img = open_image(root / rel, channels)
        except Exception as error:  # PIL raises many kinds; the file is skipped, not the run
            skipped.append({"file": rel,
                            "error": display_name(f"{type(error).__name__}: {error}")})
            continue
        sizes.append((img.height, img.width))
        top, left, h, w = letterbox_box(img.height, img.width, size)
        square = np.zeros((size, size, channels), dtype=np.uint8)
        square[top:top + h, left:left + w] = np.asarray(
            img.resize((w, h), Image.BILINEAR), dtype=np.uint8).reshape(h, w, channels)
        images.append(square)
        boxes.append((top, left, h, w))
        files.append(rel)
    if not images:
        raise UserError(f"none of the images in {root} could be read: {skipped[:3]} ...")
    skipped.sort(key=lambda entry: entry["file"])
    return ResizedFolder(np.stack(images), files, sizes, skipped, boxes)
