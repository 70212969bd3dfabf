"""Image sources: Fashion-MNIST IDX files, folders of image files, in-memory arrays.

Every source returns an :class:`ImageSet`; :func:`load_images` picks the source from ``data``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from selfsight.errors import UserError
from selfsight.run_folder import FASHION_MNIST, RunFolder

from .arrays import convert_channels, from_arrays, is_tensor
from .fashion_mnist import load_fashion_mnist
from .folder import default_folder_size, load_folder, write_skipped_report
from .imageset import ImageSet

if TYPE_CHECKING:
    import torch

__all__ = [
    "FASHION_MNIST",
    "ImageSet",
    "align_classes",
    "default_folder_size",
    "from_arrays",
    "load_eval_sets",
    "load_every_image",
    "load_fashion_mnist",
    "load_folder",
    "load_images",
    "run_images",
    "write_skipped_report",
]

DEFAULT_FOLDER_SIZE = 64
_SPLITS = ("train", "test")
_ACCEPTED = (
    "'fashion-mnist', 'fashion-mnist:/dir/with/idx/files', a path to an existing image "
    "folder, an ImageSet, or a numpy array / torch tensor of images"
)


def load_images(
    data: str | os.PathLike[str] | np.ndarray | torch.Tensor,
    split: str = "train",
    size: int | None = None,
    channels: int | None = None,
    cache_dir: str | Path | None = None,
    labels: str | Path | np.ndarray | torch.Tensor | None = None,
    progress: bool = True,
) -> ImageSet:
    """Load ``data`` from whichever source it names.

    ``size`` applies to folders only (default: the images' median short side, at most 64);
    Fashion-MNIST and arrays keep their native size. ``channels`` (1 or 3) converts any
    source; None keeps (or, for folders, detects) it.
    ``labels`` is a CSV path for folders and an integer array for arrays. ``split`` picks the
    Fashion-MNIST split, or ``root/train`` / ``root/test`` of a folder that has both; arrays
    ignore it.
    """
    if split not in _SPLITS:
        raise UserError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    if isinstance(data, ImageSet):
        return _with_channels(data, channels)
    if isinstance(data, np.ndarray) or is_tensor(data):
        return _with_channels(from_arrays(data, labels=labels), channels)
    if _is_fashion_mnist(data):
        root = data[len(FASHION_MNIST) + 1 :] or None
        return _with_channels(load_fashion_mnist(split, root=root), channels)
    if isinstance(data, (str, os.PathLike)) and Path(data).expanduser().is_dir():
        folder = _folder_for_split(Path(data).expanduser(), split)
        return load_folder(
            folder,
            size=default_folder_size(folder, DEFAULT_FOLDER_SIZE) if size is None else size,
            channels=channels,
            cache_dir=cache_dir,
            labels=_csv_path(labels),
            progress=progress,
        )
    raise UserError(f"cannot load images from {_describe(data)}; accepted: {_ACCEPTED}")


def load_every_image(data: Any, size: int, channels: int, progress: bool = True) -> ImageSet:
    """Every readable image of ``data`` for inference, decoded at ``size``: a folder whole; a
    pre-split folder or Fashion-MNIST as its training then its test split, labelled by the
    training classes where both splits have labels (Fashion-MNIST rows are named
    ``fashion-mnist-train/i`` and ``fashion-mnist-test/i``); any other source as
    :func:`load_images`."""
    if _is_fashion_mnist(data) or _is_split_folder(data):
        train, test = (load_images(data, split=s, size=size, channels=channels,
                                   progress=progress) for s in _SPLITS)
        labels = None
        if train.labels is not None:
            try:
                test = _in_training_classes(test, train, data)
            except ValueError:  # a test class the training split lacks: no shared numbering
                pass
            else:
                if test.labels is not None:
                    labels = np.concatenate([train.labels, test.labels])
        return ImageSet(np.concatenate([train.images, test.images]), labels,
                        files=train.row_names() + test.row_names(),
                        classes=train.classes if labels is not None else None,
                        skipped=train.skipped + test.skipped,
                        name=FASHION_MNIST if _is_fashion_mnist(data) else Path(data).name)
    if isinstance(data, (str, os.PathLike)) and Path(data).expanduser().is_dir():
        return load_folder(Path(data).expanduser(), size=size, channels=channels,
                           progress=progress)
    return load_images(data, split="train", size=size, channels=channels, progress=progress)


def _is_fashion_mnist(data: Any) -> bool:
    return isinstance(data, str) and (data == FASHION_MNIST
                                      or data.startswith(FASHION_MNIST + ":"))


def _is_split_folder(data: Any) -> bool:
    """A folder with train/ and test/ sub-folders: its two splits."""
    if not isinstance(data, (str, os.PathLike)):
        return False
    root = Path(data).expanduser()
    return (root / "train").is_dir() and (root / "test").is_dir()


def _folder_for_split(root: Path, split: str) -> Path:
    """``root/split`` when the folder is pre-split; the whole folder serves only as "train"."""
    if _is_split_folder(root):
        return root / split
    if split == "test":
        raise UserError(
            f"folder {root} has no train/ and test/ sub-folders, so there is no test split; "
            "load it as split='train'"
        )
    return root


def _csv_path(labels: Any) -> str | Path | None:
    if labels is None or isinstance(labels, (str, os.PathLike)):
        return labels
    raise UserError(
        f"labels for a folder must be a CSV path, got {type(labels).__name__}"
    )


def _with_channels(imageset: ImageSet, channels: int | None) -> ImageSet:
    if channels is None or channels == imageset.channels:
        return imageset
    # replace() re-runs ImageSet's validation and leaves cached source arrays untouched.
    return dataclasses.replace(imageset, images=convert_channels(imageset.images, channels))


def _describe(data: Any) -> str:
    if isinstance(data, (str, os.PathLike)):
        return f"{str(data)!r} (not an existing directory)"
    return f"a {type(data).__name__}"


def load_eval_sets(data: Any, size: int, channels: int, labels: str | Path | None = None,
                   progress: bool = True) -> tuple[ImageSet, ImageSet]:
    """(train, test) labelled sets: Fashion-MNIST's splits, a folder's train/ and test/, or a
    single labelled folder split 80/20, stratified, with a fixed seed."""
    train = load_images(data, split="train", size=size, channels=channels, labels=labels,
                        progress=progress)
    try:
        test = load_images(data, split="test", size=size, channels=channels, labels=labels,
                           progress=progress)
    except ValueError:  # no test split: hold out 20% of the one labelled set
        from sklearn.model_selection import train_test_split

        both = train
        if both.labels is None:
            raise UserError(f"{data}: no labels found (class sub-folders or a CSV of "
                            "file,label) to evaluate with; unlabelled images are explored "
                            "instead: `selfsight explore RUN IMAGES`") from None
        train_idx, test_idx = train_test_split(np.arange(len(both)), test_size=0.2,
                                               stratify=both.labels, random_state=0)
        return both.subset(np.sort(train_idx)), both.subset(np.sort(test_idx))
    if labels is None:
        test = _in_training_classes(test, train, data)
    if train.labels is None or test.labels is None:
        raise UserError(f"{data}: evaluation needs labels (class sub-folders or a CSV) in "
                        f"both train/ and test/; {'test' if train.labels is not None else 'train'}"
                        "/ has none")
    return train, align_classes(test, train, data)


def _in_training_classes(test: ImageSet, train: ImageSet, data: Any) -> ImageSet:
    """A pre-split folder's ``test`` labelled and numbered by the training classes: a single
    class folder in test/ is one of them, and every test class must be one of them."""
    if test.labels is None and train.classes:
        test = _label_by_training_folders(test, train, data)
    return align_classes(test, train, data)


def _label_by_training_folders(test: ImageSet, train: ImageSet, data: Any) -> ImageSet:
    """``test`` labelled by the first-level sub-folders of ``data``/test when each names a
    training class: one class folder alone is not a class split, but beside train/ it is."""
    if not isinstance(data, (str, os.PathLike)) or not test.files:
        return test
    root = Path(data).expanduser() / "test"
    parts = [Path(f).relative_to(root).parts for f in test.files]
    if not all(len(p) >= 2 and p[0] in train.classes for p in parts):
        return test
    labels = np.array([train.classes.index(p[0]) for p in parts], dtype=np.int64)
    return dataclasses.replace(test, labels=labels, classes=train.classes)


def align_classes(test: ImageSet, train: ImageSet, data: Any) -> ImageSet:
    """``test`` with its labels numbered by ``train``'s class list: each split's sub-folders are
    numbered on their own, so a class missing from test/ would shift every label after it."""
    if not train.classes or not test.classes or test.classes == train.classes:
        return test
    unknown = sorted(set(test.classes) - set(train.classes))
    if unknown:
        raise UserError(f"{data}: test classes {unknown} have no training images "
                        f"(training classes: {train.classes})")
    lookup = np.array([train.classes.index(c) for c in test.classes])
    return dataclasses.replace(test, labels=lookup[test.labels], classes=train.classes)


def run_images(run: Path, size: int | None, channels: int, progress: bool = True
               ) -> ImageSet | None:
    """The training images named in ``run/config.yaml`` (``data``), or None when they cannot be
    loaded again (in-memory arrays, a moved folder)."""
    data = RunFolder(run).read_config().get("data")
    if not isinstance(data, str):
        return None
    try:
        return load_images(data, split="train", size=size, channels=channels,
                           progress=progress)
    except (ValueError, FileNotFoundError, OSError):
        return None
