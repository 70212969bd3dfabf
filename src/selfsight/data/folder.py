"""A folder of image files, decoded once into a memory-mapped uint8 cache.

Real folders contain junk: truncated downloads, zero-byte files, text saved as ``.png``, CMYK
JPEGs, 16-bit scans, palette images with transparency, phone photos that rely on EXIF rotation.
Every readable file is normalised to the same (size, size, channels) uint8 form; every unreadable
one is skipped with its reason, and the load never crashes because of a single bad file.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from .imageset import ImageSet

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CACHE_DIRNAME = ".selfsight-cache"
SKIPPED_REPORT = "skipped_files.json"

# Bump when decoding changes, so caches written by older code are never trusted.
_CACHE_VERSION = 1
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_CHANNELS_SAMPLE = 64  # images whose modes decide channels=None
_DECODE_CHUNK = 256  # files handed to the thread pool at a time, bounding queued results


# --------------------------------------------------------------------------------------------
# Scanning


def scan_folder(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive, case-insensitive extensions), sorted.

    Hidden files and folders (names starting with ``.``) are ignored: they hold caches,
    ``.ipynb_checkpoints`` copies and macOS ``._`` resource forks, never wanted images.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} not found (or not a directory)")
    found = [
        path
        for path in root.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
        and path.is_file()
    ]
    if not found:
        raise ValueError(
            f"no images found in {root}; accepted extensions: {', '.join(IMAGE_EXTENSIONS)}"
        )
    return sorted(found, key=lambda path: path.relative_to(root).as_posix())


# --------------------------------------------------------------------------------------------
# Decoding one file


def decode_image(path: str | Path, size: int, channels: int) -> np.ndarray:
    """Decode one file to (size, size, channels) uint8; raises whatever PIL raises on bad input.

    EXIF orientation is applied; transparency is composited on black (padding and masked-out
    regions are usually black, so this adds no new colour); 16-bit data is scaled by its bit
    depth rather than clipped; the shorter side is resized to ``size`` and the centre cropped.
    """
    img = open_image(path, channels, draft=size)
    array = np.asarray(_resize_center_crop(img, size), dtype=np.uint8)
    return array.reshape(size, size, channels)


def open_image(path: str | Path, channels: int, draft: int | None = None) -> Image.Image:
    """Decode one file at its own size to an 8-bit "L" (channels 1) or "RGB" (3) image, EXIF
    orientation applied; ``draft`` lets JPEG decode at a reduced scale that stays >= draft px.
    Raises whatever PIL raises on bad input."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    with Image.open(path) as opened:
        if draft:  # JPEG can decode at 1/2..1/8 scale for free
            opened.draft(opened.mode, (draft, draft))
        opened.load()  # inside the caller's try: truncated files fail here, not later
        img = _to_8bit(_apply_exif_orientation(opened))
        return img.convert("L") if channels == 1 else img.convert("RGB")


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF Orientation tag says; a malformed EXIF block is ignored, since
    the pixels themselves decoded fine and are worth more than the tag."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


def _to_8bit(img: Image.Image) -> Image.Image:
    """Any PIL mode -> "L" or "RGB" with 8 bits per channel."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "I":
        return _integer_to_l(img)
    if img.mode == "F":
        return _float_to_l(img)
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        return _composite_on_black(img)
    if img.mode in ("L", "RGB"):
        return img
    if img.mode == "1":
        return img.convert("L")
    # P without transparency, CMYK, YCbCr, LAB, HSV, RGBX: PIL's own conversions are fine.
    return img.convert("RGB")


def _integer_to_l(img: Image.Image) -> Image.Image:
    """Scale integer data by its bit depth (16 bits -> ``>> 8``) instead of clipping at 255.

    Mode "I" has no declared depth; PNG and TIFF use it for 16-bit data, so 16 bits is assumed
    unless values exceed it, in which case the actual bit length of the maximum is used.
    """
    values = np.asarray(img).astype(np.int64)
    values = np.clip(values, 0, None)
    bits = max(16, int(values.max(initial=0)).bit_length())
    return Image.fromarray((values >> (bits - 8)).astype(np.uint8))


def _float_to_l(img: Image.Image) -> Image.Image:
    """Floats in [0, 1] scale by 255; any other range is stretched from its min to its max."""
    values = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if low < 0.0 or high > 1.0:
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return Image.fromarray(np.round(values * 255.0).astype(np.uint8))


def _composite_on_black(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(black, rgba).convert("RGB")


def _resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size``, centre crop: done as one resize of the central square."""
    width, height = img.size
    if (width, height) == (size, size):
        return img
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    box = (left, top, left + side, top + side)
    # Pillow's BILINEAR is antialiased when shrinking; reducing_gap first box-reduces big
    # photos, which is faster and no worse in quality.
    gap = 2.0 if side > 2 * size else None
    return img.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=gap)


def _safe_decode(path: Path, size: int, channels: int) -> tuple[np.ndarray | None, str]:
    """``decode_image`` that turns any failure into a reason string instead of raising."""
    try:
        return decode_image(path, size, channels), ""
    except Exception as exc:  # a bad file must never end the load, whatever PIL raised
        return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Channels, labels


def _is_gray_like(path: Path) -> bool | None:
    """True/False from the file's mode; None when the file cannot even be opened."""
    try:
        with Image.open(path) as img:
            if img.mode in _GRAY_MODES:
                return True
            if img.mode == "P":
                palette = img.getpalette() or []
                triples = zip(palette[0::3], palette[1::3], palette[2::3])
                return all(r == g == b for r, g, b in triples)
            return False
    except Exception:  # unreadable files do not vote; decoding will skip them later
        return None


def _auto_channels(files: Sequence[Path]) -> int:
    """1 when the first readable images are all grayscale-like, else 3."""
    votes: list[bool] = []
    for path in files:
        vote = _is_gray_like(path)
        if vote is not None:
            votes.append(vote)
        if len(votes) >= _CHANNELS_SAMPLE:
            break
    return 1 if votes and all(votes) else 3


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


def _read_label_csv(csv_path: Path, root: Path) -> dict[str, str]:
    """``file,label`` rows (file relative to root) -> {posix relative path: label}.

    The first row is a header when its first cell neither exists under root nor has an image
    extension, so ``file,label`` headers are skipped but a missing ``x.jpg`` is still an error.
    """
    if not csv_path.is_file():
        raise FileNotFoundError(f"labels CSV {csv_path} not found")
    table: dict[str, str] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if len(cells) < 2 or not cells[0] or not cells[1]:
                raise ValueError(f"{csv_path} row {number}: expected 'file,label', got {row}")
            rel = Path(cells[0]).as_posix()
            if not (root / rel).is_file():
                if number == 1 and Path(rel).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue  # header row
                raise FileNotFoundError(
                    f"{csv_path} row {number}: file {cells[0]!r} not found under {root}"
                )
            if rel in table:
                raise ValueError(f"{csv_path} row {number}: {cells[0]!r} is listed twice")
            table[rel] = cells[1]
    if not table:
        raise ValueError(f"labels CSV {csv_path} lists no files")
    return table


# --------------------------------------------------------------------------------------------
# Cache


def _default_cache_dir(root: Path) -> Path:
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


def _load_cache(array_path: Path, index_path: Path, size: int) -> tuple[np.ndarray, dict] | None:
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
            results = pool.map(functools.partial(_safe_decode, size=size, channels=channels), paths)
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


def _write_cache(
    array_path: Path,
    index_path: Path,
    root: Path,
    relative: Sequence[str],
    size: int,
    channels: int,
    request: str,
    progress: bool,
) -> None:
    """Decode everything into temp files, then ``os.replace`` them into place.

    The array goes first and the index last; an array without its index is never trusted, so
    a decode killed at any point leaves nothing that a later load would believe. Raises
    ValueError naming the folder when not one file could be decoded.
    """
    tag = f".{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp_array = array_path.with_name(array_path.name + tag)
    tmp_index = index_path.with_name(index_path.name + tag)
    try:
        out = np.lib.format.open_memmap(
            tmp_array, mode="w+", dtype=np.uint8, shape=(len(relative), size, size, channels)
        )
        kept, skipped = _decode_all(root, relative, size, channels, out, progress)
        out.flush()
        del out  # unmap before the rename
        if not kept:
            details = "; ".join(f"{file}: {reason}" for file, reason in skipped[:5])
            raise ValueError(
                f"no readable images in {root}: all {len(relative)} failed to decode ({details})"
            )
        index = {
            "version": _CACHE_VERSION,
            "root": str(root.resolve()),
            "size": size,
            "channels": channels,
            "request": request,
            "files": kept,
            "skipped": skipped,
        }
        tmp_index.write_text(json.dumps(index))
        os.replace(tmp_array, array_path)
        os.replace(tmp_index, index_path)
    finally:
        for leftover in (tmp_array, tmp_index):
            leftover.unlink(missing_ok=True)
    _prune_stale(index_path, index)


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
        raise FileNotFoundError(f"image folder {root} not found (or not a directory)")
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels}")
    table = _read_label_csv(Path(labels).expanduser(), root) if labels is not None else None
    if table is not None:
        relative = sorted(table)
    else:
        relative = [path.relative_to(root).as_posix() for path in scan_folder(root)]

    cache = Path(cache_dir).expanduser() if cache_dir is not None else _default_cache_dir(root)
    cache.mkdir(parents=True, exist_ok=True)
    stem = f"{root.resolve().name or 'root'}-{_cache_key(root, relative, size, channels)}"
    array_path, index_path = cache / f"{stem}.npy", cache / f"{stem}.json"

    loaded = _load_cache(array_path, index_path, size)
    if loaded is None:
        # channels=None is part of the key as "auto", so a cache hit never re-reads any file.
        chosen = channels or _auto_channels([root / rel for rel in relative])
        # Identifies "the same load" for pruning: a CSV subset must not evict the full folder.
        selection = str(Path(labels).expanduser().resolve()) if labels is not None else "scan"
        request = f"channels={channels or 'auto'};files={selection}"
        _write_cache(array_path, index_path, root, relative, size, chosen, request, progress)
        loaded = _load_cache(array_path, index_path, size)
        if loaded is None:  # only if something outside this process broke the fresh cache
            raise OSError(f"decode cache {array_path} could not be read back")
    images, index = loaded
    return _build_imageset(root, images, index, table)


def _build_imageset(
    root: Path, images: np.ndarray, index: dict, table: dict[str, str] | None
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
        skipped=[(str(root / file), reason) for file, reason in index["skipped"]],
        name=root.resolve().name or str(root),
    )


def write_skipped_report(imageset: ImageSet, run_dir: Path) -> Path | None:
    """Write ``run_dir/skipped_files.json`` listing skipped inputs; None when nothing was."""
    if not imageset.skipped:
        return None
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "count": len(imageset.skipped),
        "files": [{"file": file, "reason": reason} for file, reason in imageset.skipped],
    }
    path = run_dir / SKIPPED_REPORT
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
