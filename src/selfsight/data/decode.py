"""Decoding one image file into a normalised uint8 array.

Real folders contain junk: truncated downloads, zero-byte files, text saved as ``.png``, CMYK
JPEGs, 16-bit scans, palette images with transparency, phone photos that rely on EXIF rotation.
Every readable file becomes the same (size, size, channels) uint8 form; :func:`safe_decode`
turns an unreadable one into a reason string, so one bad file never ends a load.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from selfsight.errors import UserError
from selfsight.file_names import display_name

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_CHANNELS_SAMPLE = 64  # images whose modes decide channels=None


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
        raise UserError(f"channels must be 1 or 3, got {channels}")
    _require_regular_file(path)
    with Image.open(path) as opened:
        if draft:  # JPEG can decode at 1/2..1/8 scale for free
            opened.draft(opened.mode, (draft, draft))
        opened.load()  # inside the caller's try: truncated files fail here, not later
        img = _to_8bit(_apply_exif_orientation(opened))
        return img.convert("L") if channels == 1 else img.convert("RGB")


def _require_regular_file(path: str | Path) -> None:
    """Raise OSError unless ``path`` is a regular file: opening a named pipe blocks until a
    writer comes, and a socket or device is never an image."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"{str(path)!r} is not a regular file (a pipe, socket, device or folder)")


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


def safe_decode(path: Path, size: int, channels: int) -> tuple[np.ndarray | None, str]:
    """``decode_image`` that turns any failure into a reason string instead of raising (shown
    as :func:`~selfsight.files.display_name` shows text: a file name in it may not be UTF-8)."""
    try:
        return decode_image(path, size, channels), ""
    except Exception as exc:  # a bad file must never end the load, whatever PIL raised
        return None, display_name(f"{type(exc).__name__}: {exc}" if str(exc)
                                  else type(exc).__name__)


# --------------------------------------------------------------------------------------------
# Channel detection: grayscale-like files


def _is_gray_like(path: Path) -> bool | None:
    """True/False from the file's mode; None when the file cannot even be opened."""
    try:
        _require_regular_file(path)
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


def auto_channels(files: Sequence[Path]) -> int:
    """1 when the first readable images are all grayscale-like, else 3."""
    votes: list[bool] = []
    for path in files:
        vote = _is_gray_like(path)
        if vote is not None:
            votes.append(vote)
        if len(votes) >= _CHANNELS_SAMPLE:
            break
    return 1 if votes and all(votes) else 3
