"""Signal data as one array: :class:`SignalSet` holds (N, channels, length) float32 with labels,
made from any source :func:`load_signals` accepts.

Series of other lengths are cropped or padded to one length; missing values are filled by
linear interpolation; a series with no values is skipped. Each of these is counted and stated
in one printed line, so nothing changes the data silently."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from selfsight.errors import UserError
from selfsight.signals.names import PREFIXES, SUFFIXES
from selfsight.signals.readers import Series, read_bundled, read_file

SPLITS = ("train", "test")


@dataclass
class SignalSet:
    """(N, C, L) float32 series, optional int64 labels, and what loading them changed.

    ``images`` shows the same array as (N, 1, L, C): the shared training loader reads rows as
    (N, H, W, C) and hands the method (B, C, H, W), so a signal travels as a C-channel image of
    height 1 and every method, callback and checkpoint works on it unchanged."""

    signals: np.ndarray  # (N, C, L) float32
    labels: np.ndarray | None = None  # (N,) int64
    classes: list[str] | None = None
    name: str = "signals"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[str] | None = None  # no per-row files (start_run's fingerprint reads this)
    rows: list[str] | None = None  # row names when not NAME/i (splits joined: each its own)

    def __post_init__(self) -> None:
        if self.signals.dtype != np.float32 or self.signals.ndim != 3:
            raise UserError(f"SignalSet '{self.name}': signals must be float32 (N, C, L), got "
                            f"{self.signals.dtype} {self.signals.shape}")
        if self.labels is not None and len(self.labels) != len(self.signals):
            raise UserError(f"SignalSet '{self.name}': {len(self.labels)} labels for "
                            f"{len(self.signals)} series")

    def __len__(self) -> int:
        return len(self.signals)

    @property
    def channels(self) -> int:
        return int(self.signals.shape[1])

    @property
    def length(self) -> int:
        return int(self.signals.shape[2])

    @property
    def images(self) -> np.ndarray:
        return self.signals[:, :, None, :].transpose(0, 2, 3, 1)  # (N, 1, L, C), a view

    def row_names(self) -> list[str]:
        """``NAME-SPLIT/i``, as Fashion-MNIST rows are named (``fashion-mnist-train/i``)."""
        return list(self.rows) if self.rows else [f"{self.name}/{i}" for i in range(len(self))]


def load_signals(data: Any, split: str = "train", length: int | None = None,
                 classes: list[str] | None = None, verbose: bool = True) -> SignalSet:
    """One split of ``data``: ``uea:NAME`` / ``ucr:NAME`` (aeon's bundled sets), a ``.ts``,
    ``.npy``, ``.npz`` or ``.csv`` file, or an array (N, L) / (N, C, L).

    ``length``: crop or pad every series to it (default: the longest series). ``classes``:
    number the labels by this list (a test split by its training split's classes)."""
    if split not in SPLITS:
        raise UserError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if isinstance(data, np.ndarray):
        if split == "test":
            raise UserError("an in-memory array holds one split; there is no test split")
        array = data[:, None, :] if data.ndim == 2 else data
        if array.ndim != 3 or array.dtype.kind not in "fiub":
            raise UserError(f"signals must be numbers of shape (N, L) or (N, C, L), got "
                            f"{array.dtype} {data.shape}")
        series, labels, where, name = list(array.astype(np.float64)), None, "array", "arrays"
    elif isinstance(data, str) and data.startswith(PREFIXES):
        series, labels = read_bundled(data, split)
        where, name = data, f"{data.split(':', 1)[1]}-{split}"
    elif isinstance(data, (str, os.PathLike)) and Path(data).suffix.lower() in SUFFIXES:
        series, labels = read_file(data, split)
        where, name = str(data), f"{Path(data).stem}-{split}"
    else:
        raise UserError(f"cannot read signals from {data!r}; accepted: 'uea:NAME' or "
                        f"'ucr:NAME' (bundled sets), a {'/'.join(SUFFIXES)} file, or an array")
    return as_signal_set(series, labels, where, name, length, classes, verbose)


def as_signal_set(series: Series, labels: list[str] | None, where: str, name: str,
                  length: int | None = None, classes: list[str] | None = None,
                  verbose: bool = True) -> SignalSet:
    """Raw series to a SignalSet: empty series skipped, NaNs filled, one length; each change
    counted in ``notes`` (printed when ``verbose``)."""
    notes, skipped, kept = [], [], []
    channels = {s.shape[0] for s in series}
    if len(channels) > 1:
        raise UserError(f"{where}: series have different channel counts {sorted(channels)}")
    nans = 0
    for row, s in enumerate(series):
        missing = np.isnan(s)
        if s.shape[1] == 0 or missing.all(axis=1).any():
            skipped.append((f"{where}#{row + 1}", "no values (a 0-length or all-missing series)"))
            continue
        if not np.isfinite(s[~missing]).all():
            raise UserError(f"{where}, series {row + 1}: infinite values")
        nans += int(missing.sum())
        kept.append(row)
    if not kept:
        raise UserError(f"{where}: no series with values ({len(series)} read, all empty)")
    if skipped:
        notes.append(f"{len(skipped)} of {len(series)} series skipped: no values "
                     f"(first: row {skipped[0][0].rsplit('#', 1)[1]})")
    if nans:
        notes.append(f"{nans} missing values (NaN) filled by linear interpolation in time")
    lengths = [series[i].shape[1] for i in kept]
    target = length or max(lengths)
    if min(lengths) != max(lengths) or target != lengths[0]:
        notes.append(f"lengths {min(lengths)}..{max(lengths)}: cropped or padded (with each "
                     f"series' last value) to {target} steps")
    array = np.stack([fit_length(fill_missing(series[i]), target) for i in kept])
    label_array, classes = _numbered(labels, kept, classes, where)
    if verbose:
        for note in notes:
            print(f"{where} ({name}): {note}", file=sys.stderr, flush=True)
    return SignalSet(array.astype(np.float32), label_array, classes, name, skipped, notes)


def load_signal_splits(data: Any, length: int | None = None, verbose: bool = True
                       ) -> tuple[SignalSet, SignalSet | None]:
    """(train, test) of ``data``, the test split at the training length and numbered by the
    training classes; test is None when the source has no test split."""
    train = load_signals(data, "train", length, verbose=verbose)
    try:
        test = load_signals(data, "test", length or train.length, train.classes, verbose)
    except UserError as error:
        if "no test split" not in str(error):
            raise
        test = None
    return train, test


def fill_missing(series: np.ndarray) -> np.ndarray:
    """NaNs of each channel by linear interpolation in time, the ends by the nearest value."""
    out = series.copy()
    steps = np.arange(series.shape[1])
    for channel in out:
        missing = np.isnan(channel)
        if missing.any():
            channel[missing] = np.interp(steps[missing], steps[~missing], channel[~missing])
    return out


def fit_length(series: np.ndarray, length: int) -> np.ndarray:
    """The first ``length`` steps; a shorter series continued with its last value (a sensor
    that stopped reads as one that held still, not as a drop to zero)."""
    if series.shape[1] >= length:
        return series[:, :length]
    pad = np.repeat(series[:, -1:], length - series.shape[1], axis=1)
    return np.concatenate([series, pad], axis=1)


def channel_stats(signals: SignalSet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation over every series and step of a (training)
    split; a constant channel gets std 1, so it standardises to zeros instead of dividing by 0."""
    x = signals.signals.astype(np.float64)
    mean = x.mean(axis=(0, 2))
    std = x.std(axis=(0, 2))
    std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _numbered(labels: list[str] | None, kept: list[int], classes: list[str] | None,
              where: str) -> tuple[np.ndarray | None, list[str] | None]:
    if labels is None:
        return None, classes
    kept_labels = [labels[i] for i in kept]
    if classes is None:
        classes = sorted(set(kept_labels), key=_label_key)
    unknown = sorted(set(kept_labels) - set(classes))
    if unknown:
        raise UserError(f"{where}: classes {unknown[:5]} are not in the training split's "
                        f"{classes[:10]}")
    return np.array([classes.index(v) for v in kept_labels], dtype=np.int64), classes


def _label_key(label: str) -> tuple[int, float | str]:
    """Numeric labels in numeric order (2 before 10), text ones after them alphabetically."""
    try:
        return 0, float(label)
    except ValueError:
        return 1, label
