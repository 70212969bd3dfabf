"""Signal data as one array: :class:`SignalSet` holds (N, channels, length) float32 with labels,
made from any source :func:`load_signals` accepts.

Series of other lengths are cropped or padded to one length; missing values are filled by
linear interpolation; a series with no values is skipped. Each of these is counted and stated
in one printed line, so nothing changes the data silently."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from selfsight.errors import UserError
from selfsight.signals.names import PREFIXES, SUFFIXES, is_signal_source, signal_path
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
    noun: ClassVar[str] = "series"  # what one row is, in messages
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

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            return 0
        return len(self.classes) if self.classes else int(self.labels.max()) + 1

    def subset(self, index: np.ndarray) -> SignalSet:
        """Rows ``index``, with their labels and names (as ``ImageSet.subset``)."""
        names = self.row_names()
        return replace(self, signals=self.signals[index],
                       labels=None if self.labels is None else self.labels[index],
                       rows=[names[i] for i in index])

    def check_channels(self, in_chans: int, where: Any) -> None:
        """One line naming ``where`` when a backbone trained on ``in_chans`` channels cannot
        take these series."""
        if self.channels != in_chans:
            raise UserError(f"{where}: {self.channels} channel{'s' * (self.channels != 1)}, "
                            f"but the backbone was trained on {in_chans}")

    def row_names(self) -> list[str]:
        """``NAME-SPLIT/i``, as Fashion-MNIST rows are named (``fashion-mnist-train/i``)."""
        return list(self.rows) if self.rows else [f"{self.name}/{i}" for i in range(len(self))]


def load_signals(data: Any, split: str = "train", length: int | None = None,
                 classes: list[str] | None = None, verbose: bool = True) -> SignalSet:
    """One split of ``data``: ``uea:NAME`` / ``ucr:NAME`` (aeon's bundled sets), a ``.ts``,
    ``.npy``, ``.npz``, ``.csv`` or ``.parquet`` file (wide, or long: ``long:FILE``), a folder
    of CSV files (one recording each), or an array (N, L) / (N, C, L).

    ``length``: crop or pad every series to it (default: the longest series). ``classes``:
    number the labels by this list (a test split by its training split's classes)."""
    if split not in SPLITS:
        raise UserError(f"split must be one of {list(SPLITS)}, got {split!r}")
    rows, read_notes, passed_over = None, (), ()
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
    elif isinstance(data, (str, os.PathLike)) and is_signal_source(data):
        series, labels, rows, read_notes, passed_over = read_file(data, split)
        where, name = str(data), f"{signal_path(data).stem}-{split}"
    else:
        raise UserError(f"cannot read signals from {data!r}; accepted: 'uea:NAME' or "
                        f"'ucr:NAME' (bundled sets), a {'/'.join(SUFFIXES)} file, a folder of "
                        ".csv files, or an array")
    return as_signal_set(series, labels, where, name, length, classes, verbose, rows,
                         read_notes, passed_over)


def as_signal_set(series: Series, labels: list[str] | None, where: str, name: str,
                  length: int | None = None, classes: list[str] | None = None,
                  verbose: bool = True, rows: list[str] | None = None,
                  read_notes: tuple[str, ...] = (),
                  passed_over: tuple[tuple[str, str], ...] = ()) -> SignalSet:
    """Raw series to a SignalSet: empty series skipped, NaNs filled, one length, constant
    channels found; each change counted in ``notes`` after the reader's ``read_notes`` (printed
    when ``verbose``). ``rows``: the series' names (file names, ids), kept for those kept.
    ``passed_over``: the (file, reason) the reader skipped, listed first in ``skipped``."""
    notes, skipped, kept = list(read_notes), [], []
    channels = {s.shape[0] for s in series}
    if len(channels) > 1:
        odd = next(i for i, s in enumerate(series) if s.shape[0] != series[0].shape[0])
        raise UserError(f"{where}, series {rows[odd] if rows else odd + 1}: "
                        f"{series[odd].shape[0]} channels where the first has "
                        f"{series[0].shape[0]} (series have different channel counts)")
    nans = 0
    for row, s in enumerate(series):
        missing = np.isnan(s)
        if s.shape[1] == 0 or missing.all(axis=1).any():
            skipped.append((f"{where}#{rows[row] if rows else row + 1}",
                            "no values (a 0-length or all-missing series)"))
            continue
        if not np.isfinite(s[~missing]).all():
            raise UserError(f"{where}, series {row + 1}: infinite values")
        nans += int(missing.sum())
        kept.append(row)
    if not kept:
        raise UserError(f"{where}: no series with values ({len(series)} read, all empty)")
    if skipped:
        notes.append(f"{len(skipped)} of {len(series)} series skipped: no values "
                     f"(first: {'' if rows else 'row '}{skipped[0][0].rsplit('#', 1)[1]})")
    if nans:
        notes.append(f"{nans} missing values (NaN) filled by linear interpolation in time")
    lengths = [series[i].shape[1] for i in kept]
    target = length or max(lengths)
    if min(lengths) != max(lengths) or target != lengths[0]:
        notes.append(f"lengths {min(lengths)}..{max(lengths)}: cropped or padded (with each "
                     f"series' last value) to {target} steps")
    array = np.stack([fit_length(fill_missing(series[i]), target) for i in kept])
    constant = np.flatnonzero(~_varies(*_moments(array)))
    if len(constant):
        notes.append(f"channel(s) {[int(c) + 1 for c in constant[:8]]} constant: standardising "
                     "would divide by zero, so they standardise to zeros (std taken as 1)")
    label_array, classes = _numbered(labels, kept, classes, where)
    if verbose:
        for note in notes:
            print(f"{where} ({name}): {note}", file=sys.stderr, flush=True)
    return SignalSet(array.astype(np.float32), label_array, classes, name,
                     [*passed_over, *skipped], notes,
                     rows=[rows[i] for i in kept] if rows else None)


def load_signal_splits(data: Any, length: int | None = None, verbose: bool = True,
                       own_lengths: bool = False) -> tuple[SignalSet, SignalSet | None]:
    """(train, test) of ``data``, the test split at the training length (``own_lengths``: at
    its own, as anomaly scores of every step need) and numbered by the training classes; test
    is None when the source has no test split."""
    train = load_signals(data, "train", length, verbose=verbose)
    test_length = length if own_lengths else length or train.length
    try:
        test = load_signals(data, "test", test_length, train.classes, verbose)
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
    mean, std = _moments(signals.signals)
    std = np.where(_varies(mean, std), std, 1.0)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _moments(signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of (N, C, L) over series and steps."""
    x = signals.astype(np.float64)
    return x.mean(axis=(0, 2)), x.std(axis=(0, 2))


def _varies(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Channels whose spread is more than rounding: the others would divide by ~0."""
    return std > 1e-8 * np.maximum(1.0, np.abs(mean))


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
