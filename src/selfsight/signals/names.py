"""What counts as signal data and as a signal backbone, without torch (the command line and the
torch-free layer ask this before anything heavy loads)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

# Built-in names of the UCR (univariate) and UEA (multivariate) sets bundled with aeon.
PREFIXES = ("uea:", "ucr:")
# Files read as signals: arrays, one series per CSV row, the UCR/UEA .ts format.
SUFFIXES = (".npy", ".npz", ".csv", ".ts")

SIGNAL_BACKBONES = {
    "resnet1d": "1-D ResNet (Wang et al., 2017): three residual blocks of 7-5-3 convolutions, "
                "64-128-128 channels, global average pooling; the default for signals",
    "inceptiontime": "InceptionTime (Ismail Fawaz et al., 2020): six Inception modules "
                     "(kernels 9/19/39 + max-pool branch), residual every third",
    "patchtst": "PatchTST-style transformer (Nie et al., 2023): the series cut into patches, "
                "each a token, a small Transformer encoder, mean-pooled",
}
DEFAULT_SIGNAL_BACKBONE = "resnet1d"


def is_signal_backbone(name: Any) -> bool:
    return isinstance(name, str) and name in SIGNAL_BACKBONES


def is_signal_source(data: Any) -> bool:
    """A built-in ``uea:``/``ucr:`` name, or a path whose suffix is a signal format."""
    if isinstance(data, str) and data.startswith(PREFIXES):
        return True
    return isinstance(data, (str, os.PathLike)) and Path(data).suffix.lower() in SUFFIXES


def bundled_root() -> Path | None:
    """aeon's folder of bundled data sets, found without importing aeon (seconds to load)."""
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    return root if root.is_dir() else None


def bundled_names() -> list[str]:
    """Sets shipped with aeon as NAME_TRAIN.ts + NAME_TEST.ts (no download needed)."""
    root = bundled_root()
    if root is None:
        return []
    return sorted(d.name for d in root.iterdir()
                  if (d / f"{d.name}_TRAIN.ts").is_file() and (d / f"{d.name}_TEST.ts").is_file())
