"""What counts as signal data and as a signal backbone, without torch (the command line and the
torch-free layer ask this before anything heavy loads)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

# Built-in names of the UCR (univariate) and UEA (multivariate) sets bundled with aeon, and of
# its anomaly-detection recordings (``tsad:``, TimeEval CSV files).
PREFIXES = ("uea:", "ucr:", "tsad:")
ANOMALY_LABEL = "is_anomaly"  # the last column of a TimeEval CSV file
# Files read as signals: arrays, CSV and Parquet tables, the UCR/UEA .ts format; also folders
# of CSV files (one recording each) and ``long:FILE`` (a table in long format, id first).
SUFFIXES = (".npy", ".npz", ".csv", ".parquet", ".ts")
LONG_PREFIX = "long:"

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
    """A built-in ``uea:``/``ucr:`` name, ``long:FILE``, a path whose suffix is a signal
    format, or a folder of CSV files."""
    if isinstance(data, str) and data.startswith((*PREFIXES, LONG_PREFIX)):
        return True
    if not isinstance(data, (str, os.PathLike)):
        return False
    return Path(data).suffix.lower() in SUFFIXES or is_signal_folder(data)


def signal_path(data: str | os.PathLike) -> Path:
    """The file or folder of a signal source (``long:`` taken off)."""
    return Path(str(data).removeprefix(LONG_PREFIX)).expanduser()


def is_signal_folder(path: str | os.PathLike) -> bool:
    """A folder whose files (hidden ones aside, sub-folders included) are all CSV files, one
    recording each; an image folder is told apart at its first image."""
    root = Path(path).expanduser()
    if not root.is_dir():
        return False
    found = False
    for _, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            if not name.lower().endswith(".csv"):
                return False
            found = True
    return found


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


def bundled_anomaly_names() -> list[str]:
    """Anomaly-detection sets shipped with aeon: folders of TimeEval CSV files (a timestamp
    column, the channels, an ``is_anomaly`` column), one long recording per file."""
    root = bundled_root()
    if root is None:
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir()
                  and any(is_timeeval_csv(f) for f in d.glob("*.csv")))


def is_timeeval_csv(path: Path) -> bool:
    """A CSV file whose header ends in ``is_anomaly`` (TimeEval's format, Schmidl et al., 2022)."""
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return header.strip().lower().endswith(ANOMALY_LABEL)
