"""Fashion-MNIST from the IDX files shipped by the Debian package ``dataset-fashion-mnist``.

The reader is deliberately strict: a wrong magic number or a size that does not match the header
means the file is not what its name claims, and silently reshaping it would train on garbage.
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from selfsight.errors import MissingInput, UserError

from .imageset import ImageSet

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "SELFSIGHT_FASHION_MNIST"

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}
_INSTALL_HINT = (
    f"install it with `apt-get install dataset-fashion-mnist`, or point {ENV_VAR} "
    "(or root=) at a directory holding the IDX files"
)


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> ImageSet:
    """Load one Fashion-MNIST split as (N, 28, 28, 1) uint8 images with int64 labels.

    ``root`` defaults to ``$SELFSIGHT_FASHION_MNIST``, then ``/usr/share/datasets/fashion-mnist``.
    Parsed arrays are cached in-process and returned read-only, so repeated loads are free and
    no caller can corrupt another caller's copy.
    """
    prefix = _split_prefix(split)
    directory = _resolve_root(root)
    images_path = _find_idx(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(directory, f"{prefix}-labels-idx1-ubyte")
    images, labels = _load_split(_stamp(images_path), _stamp(labels_path))
    return ImageSet(
        images=images[..., None],
        labels=labels,
        files=None,
        classes=list(FASHION_MNIST_CLASSES),
        name=f"fashion-mnist-{split}",
    )


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Parse an unsigned-byte IDX file (optionally gzipped) into a read-only array.

    Raises ValueError naming the file when the magic number or the payload size is wrong.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise UserError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise UserError(
            f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(unsigned bytes, {expected_magic & 0xFF} dimension(s))"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: IDX header truncated")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise UserError(
            f"{path}: IDX header says shape {dims} ({expected} bytes in all), "
            f"but the file holds {len(data)} bytes"
        )
    # frombuffer over immutable bytes yields a read-only array: safe to share from the cache.
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _split_prefix(split: str) -> str:
    if split not in _SPLIT_PREFIX:
        raise UserError(
            f"Fashion-MNIST split must be one of {sorted(_SPLIT_PREFIX)}, got {split!r}"
        )
    return _SPLIT_PREFIX[split]


def _resolve_root(root: str | Path | None) -> Path:
    # An empty environment variable is treated as unset rather than as the current directory.
    chosen = root if root is not None else (os.environ.get(ENV_VAR) or DEFAULT_ROOT)
    directory = Path(chosen).expanduser()
    if not directory.is_dir():
        raise MissingInput(f"Fashion-MNIST directory {directory} not found; {_INSTALL_HINT}")
    return directory


def _find_idx(directory: Path, stem: str) -> Path:
    """Prefer the uncompressed file (faster), fall back to the ``.gz`` Debian ships."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise MissingInput(
        f"Fashion-MNIST file {directory / stem}[.gz] not found; {_INSTALL_HINT}"
    )


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(f"{path}: cannot decompress: {exc}") from exc


def _stamp(path: Path) -> tuple[str, int, int]:
    """Cache key that changes when the file is replaced, so the in-process cache never stales."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


# Two splits of one root (images + labels each) fit; tests with many tiny roots stay bounded.
@functools.lru_cache(maxsize=4)
def _load_split(
    images_stamp: tuple[str, int, int], labels_stamp: tuple[str, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_stamp[0], IMAGES_MAGIC)
    labels = read_idx(labels_stamp[0], LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise UserError(f"{images_stamp[0]}: expected 28x28 images, got {images.shape[1:]}")
    if len(labels) != len(images):
        raise UserError(
            f"{labels_stamp[0]}: {len(labels)} labels for {len(images)} images"
        )
    if len(labels) and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise UserError(f"{labels_stamp[0]}: label {int(labels.max())} is out of range 0..9")
    labels64 = labels.astype(np.int64)
    labels64.flags.writeable = False
    return images, labels64
