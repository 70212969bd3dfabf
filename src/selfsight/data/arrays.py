"""In-memory images (numpy arrays or torch tensors) turned into an ImageSet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from selfsight.errors import UserError

from .imageset import ImageSet

if TYPE_CHECKING:
    import torch

_FLOAT_TOLERANCE = 1e-3  # float images may overshoot [0, 1] by rounding, not by a scale error
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601-2, the weights PIL uses for "L"


def from_arrays(
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor | None = None,
    name: str = "arrays",
) -> ImageSet:
    """Wrap in-memory images as an ImageSet of (N, H, W, C) uint8.

    Accepted layouts: (N, H, W) grayscale, (N, H, W, C) and (N, C, H, W) with C in {1, 3}.
    Channels-first is assumed only when dim 1 is 1 or 3 and the last dim is not, so an
    ambiguous shape such as (N, 3, 3, 3) is read as channels-last. uint8 is used as is
    (no copy when already channels-last); floats must lie in [0, 1] and are scaled to 0..255.
    """
    array = _to_numpy(images)
    array = _to_nhwc(array)
    array = _to_uint8(array)
    label_array = None if labels is None else _to_labels(labels, len(array))
    return ImageSet(images=array, labels=label_array, name=name)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """(N, H, W, C) uint8 to ``channels`` (1: luminance, 3: gray replicated); no-op if equal."""
    if channels not in (1, 3):
        raise UserError(f"channels must be 1 or 3, got {channels}")
    if images.shape[-1] == channels:
        return images
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    luma = np.tensordot(images.astype(np.float32), _LUMA.astype(np.float32), axes=([-1], [0]))
    return np.round(luma).astype(np.uint8)[..., None]


def is_tensor(value: Any) -> bool:
    # Duck typing keeps torch out of the import path of the data layer.
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def _to_numpy(images: Any) -> np.ndarray:
    if is_tensor(images):
        tensor = images.detach().cpu()
        # numpy has no bfloat16; float32 holds every float tensor's values exactly enough.
        if tensor.is_floating_point():
            tensor = tensor.float()
        return tensor.numpy()
    if isinstance(images, np.ndarray):
        return images
    raise UserError(
        f"images must be a numpy array or a torch tensor, got {type(images).__name__}"
    )


def _to_nhwc(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3:
        return array[..., None]
    if array.ndim == 4:
        if array.shape[-1] in (1, 3):
            return array
        if array.shape[1] in (1, 3):
            return np.ascontiguousarray(array.transpose(0, 2, 3, 1))
    raise UserError(
        "images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3}, "
        f"got shape {tuple(array.shape)}"
    )


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if len(array) == 0:
        raise UserError("images: the array holds no images (N = 0)")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise UserError(
            f"images must be uint8 or float in [0, 1], got dtype {array.dtype}; "
            "convert integer images to uint8 first"
        )
    if not np.isfinite(array).all():
        raise UserError("float images must lie in [0, 1], but they hold NaN or inf values")
    low, high = float(array.min()), float(array.max())
    if low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
        raise UserError(
            f"float images must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "undo any normalisation (e.g. mean/std, or a 0..255 float scale) first"
        )
    return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def _to_labels(labels: Any, count: int) -> np.ndarray:
    values = _to_numpy(labels) if is_tensor(labels) else np.asarray(labels)
    if values.ndim != 1 or len(values) != count:
        raise UserError(f"labels must have shape ({count},), got {tuple(values.shape)}")
    if not np.issubdtype(values.dtype, np.integer):
        raise UserError(f"labels must be integers, got dtype {values.dtype}")
    if count and int(values.min()) < 0:
        raise UserError(f"labels must be >= 0, got {int(values.min())}")
    return values.astype(np.int64)
