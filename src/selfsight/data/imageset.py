"""The one in-memory form every image source becomes: a uint8 array plus optional labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from selfsight.errors import UserError


@dataclass
class ImageSet:
    """Decoded images ready for batched views.

    ``images`` is uint8 of shape (N, H, W, C) and may be a ``np.memmap`` of the on-disk decode
    cache, so later epochs never decode again. ``labels`` (N,) int64 are for evaluation only.
    ``skipped`` lists (file, reason) for every unreadable input that was left out.
    """

    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray | None = None  # (N,) int64
    files: list[str] | None = None
    classes: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    name: str = "arrays"
    noun: ClassVar[str] = "images"  # what one row is, in messages

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise UserError(
                f"ImageSet '{self.name}': images must be uint8 (N, H, W, C), "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels is not None and len(self.labels) != len(self.images):
            raise UserError(
                f"ImageSet '{self.name}': {len(self.labels)} labels for {len(self.images)} images"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images.shape[-1])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            return 0
        return len(self.classes) if self.classes else int(self.labels.max()) + 1

    def row_names(self) -> list[str]:
        """File names in row order; images without files (arrays, IDX) are named by index."""
        return list(self.files) if self.files else [f"{self.name}/{i}" for i in range(len(self))]

    def subset(self, index: np.ndarray) -> ImageSet:
        """Rows ``index`` (kept as a view where numpy allows)."""
        return ImageSet(
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            files=None if self.files is None else [self.files[i] for i in index],
            classes=self.classes,
            name=self.name,
        )
