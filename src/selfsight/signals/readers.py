"""Readers for signal files. Each returns raw series, one (channels, length_i) float array per
row, lengths free, NaNs kept, plus labels as text or None; :mod:`selfsight.signals.data` makes
them one array. A file that cannot be read is one ``UserError`` line naming the file and row.
:func:`read_file` takes every format: ``.npy``/``.npz`` arrays, CSV (one series per row, or
long format, :mod:`selfsight.signals.tables`), Parquet, the UCR/UEA ``.ts`` format, TimeEval
CSV recordings, and folders of per-recording CSV files (:mod:`selfsight.signals.folders`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from selfsight.errors import MissingInput, UserError
from selfsight.signals.folders import read_folder
from selfsight.signals.names import (
    LONG_PREFIX,
    bundled_anomaly_names,
    bundled_names,
    bundled_root,
    is_signal_folder,
    is_timeeval_csv,
    signal_path,
)
from selfsight.signals.tables import (
    ID_COLUMNS,
    LABEL_COLUMNS,
    Series,
    Table,
    cell_number,
    csv_columns,
    csv_rows,
    find_column,
    is_header,
    read_columns,
    read_parquet,
)

ARRAY_KEYS = {"train": (("X", "x", "data", "X_train"), ("y", "labels", "y_train")),
              "test": (("X_test", "x_test"), ("y_test", "labels_test"))}


def read_bundled(name: str, split: str) -> tuple[Series, list[str] | None]:
    """``uea:NAME`` / ``ucr:NAME``: aeon's bundled NAME_TRAIN.ts / NAME_TEST.ts, read from the
    wheel's own folder (never downloaded); ``tsad:NAME``: its anomaly recordings."""
    set_name = name.split(":", 1)[1]
    root = bundled_root()
    if root is None:
        raise UserError(f"{name}: the built-in signal sets come with aeon (pip install aeon)")
    if name.startswith("tsad:"):
        return read_timeeval(bundled_anomaly_file(name, split))
    if set_name not in bundled_names():
        raise MissingInput(f"{name}: not a bundled set (no download is made); bundled: "
                           f"{', '.join(bundled_names())}")
    return read_ts(root / set_name / f"{set_name}_{split.upper()}.ts")


def bundled_anomaly_file(name: str, split: str) -> Path:
    """The file of ``tsad:NAME``'s ``split``: NAME_TRAIN.csv (normal) / NAME_TEST.csv, or the
    folder's single CSV file as the training split (then there is no test split)."""
    root = bundled_root()
    if root is None:
        raise UserError(f"{name}: the built-in signal sets come with aeon (pip install aeon)")
    folder = root / name.split(":", 1)[1]
    if folder.name not in bundled_anomaly_names():
        raise MissingInput(f"{name}: not a bundled anomaly set (no download is made); bundled: "
                           f"{', '.join(bundled_anomaly_names())}")
    files = sorted(folder.glob("*.csv"))
    chosen = [f for f in files if f.stem.upper().endswith(f"_{split.upper()}")]
    if not chosen and len(files) == 1 and split == "train":
        chosen = files
    if not chosen:
        raise UserError(f"{name}: no {split} split (files: {', '.join(f.name for f in files)})")
    return chosen[0]


def read_timeeval(path: Path) -> tuple[Series, list[str] | None]:
    """One long recording in TimeEval's CSV format (Schmidl et al., 2022): a timestamp column,
    one column per channel, an ``is_anomaly`` column, read through aeon. The per-step labels
    are not series labels and are left out; :func:`anomaly_labels` gives them."""
    values, _ = _timeeval(path)
    return [values], None


def anomaly_labels(path: Path) -> np.ndarray:
    """(steps,) int 0/1: the ``is_anomaly`` column of a TimeEval CSV file."""
    return _timeeval(path)[1]


def _timeeval(path: Path) -> tuple[np.ndarray, np.ndarray]:
    _exists(path)
    from aeon.datasets import load_from_timeeval_csv_file

    try:
        X, y = load_from_timeeval_csv_file(path)
        values = np.asarray(X, dtype=np.float64)
        labels = np.asarray(y).astype(np.int64)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as error:
        raise UserError(f"{path}: not a readable TimeEval CSV file (timestamp, channels..., "
                        f"is_anomaly: {error})") from None
    values = values.reshape(len(values), -1).T  # (channels, steps)
    if values.shape[1] == 0:
        raise UserError(f"{path}: no rows of data")
    return values, labels


def read_ts(path: Path) -> tuple[Series, list[str] | None]:
    """The UCR/UEA ``.ts`` format (Bagnall et al.'s archive), through aeon's reader."""
    _exists(path)
    from aeon.datasets import load_from_ts_file

    try:
        X, y = load_from_ts_file(str(path))
    except (OSError, ValueError, TypeError, IndexError, KeyError) as error:
        raise UserError(f"{path}: not a readable .ts file ({error})") from None
    series = [np.asarray(x, dtype=np.float64).reshape(np.shape(x)[0], -1) for x in X]
    labels = None if y is None or len(y) == 0 else [str(v) for v in y]
    return series, labels


def read_array_file(path: Path, split: str) -> tuple[Series, list[str] | None]:
    """``.npy``: (N, L) or (N, C, L), train split only. ``.npz``: ``X`` (and ``y``) for the
    training split, ``X_test`` (and ``y_test``) for the test split."""
    _exists(path)
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):  # .npy header, .npz zip
        raise UserError(f"{path}: not a numpy file (it starts with {magic!r}; a .npy starts "
                        "with \\x93NUMPY, a .npz is a zip archive)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UserError(f"{path}: not a readable numpy file ({error})") from None
    labels = None
    if isinstance(loaded, np.ndarray):
        if split == "test":
            raise UserError(f"{path}: a .npy file holds one split; there is no test split "
                            "(use a .npz with X, y, X_test, y_test)")
        array = loaded
    else:
        with loaded:
            x_keys, y_keys = ARRAY_KEYS[split]
            key = next((k for k in x_keys if k in loaded.files), None)
            if key is None:  # without a test array, one split (as a .npy file holds)
                none = "; there is no test split" if split == "test" else ""
                raise UserError(f"{path}: no {split} array{none} (expected one of "
                                f"{list(x_keys)}; found {loaded.files})")
            array = loaded[key]
            y_key = next((k for k in y_keys if k in loaded.files), None)
            if y_key is not None:
                labels = [str(v) for v in np.asarray(loaded[y_key]).reshape(-1)]
    if array.dtype.kind not in "fiub":
        raise UserError(f"{path}: signals must be numbers, got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[:, None, :]
    if array.ndim != 3:
        raise UserError(f"{path}: signals must be (N, length) or (N, channels, length), got "
                        f"shape {array.shape}")
    if labels is not None and len(labels) != len(array):
        raise UserError(f"{path}: {len(labels)} labels for {len(array)} series")
    return list(array.astype(np.float64)), labels


def read_csv(path: Path, split: str, explicit_long: bool = False) -> Table:
    """One univariate series per row. An optional header row (all text) may name a label
    column (``label``, ``class``, ``target``, ``y``); empty cells are missing values (NaN).
    Without a header rows may differ in length (variable-length series); with one, every row
    has the header's fields. A text cell elsewhere is an error naming its row and column.
    A header with a series id column, or ``long:FILE``, is a table of named columns, wide or
    long (:mod:`selfsight.signals.tables`)."""
    _exists(path)
    if split == "test":
        raise UserError(f"{path}: a CSV file holds one split; there is no test split")
    rows = csv_rows(path)
    has_header = bool(rows and rows[0] and is_header(rows[0]))
    if explicit_long or (has_header and find_column(rows[0], ID_COLUMNS)):
        columns, first_row = csv_columns(path, rows)
        return read_columns(columns, path, first_row, explicit_long)
    header, label_col, start = None, None, 0
    if has_header:
        header, start = [v.strip().lower() for v in rows[0]], 1
        label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
    series, labels = [], [] if label_col is not None else None
    hint = ("one series per row; only a header row and a label column may hold text; long "
            "format: an 'id' column or long:FILE")
    for line, row in enumerate(rows[start:], start=start + 1):
        if header is not None and row and len(row) != len(header):
            raise UserError(f"{path}, row {line}: {len(row)} fields where the header has "
                            f"{len(header)} (ragged row)")
        values = []
        for column, cell in enumerate(row, start=1):
            if column - 1 == label_col:
                labels.append(cell.strip())
                continue
            values.append(cell_number(cell, f"{path}, row {line}", column, hint))
        series.append(np.asarray(values, dtype=np.float64).reshape(1, -1))
    if not series:
        raise UserError(f"{path}: no rows of data")
    return Table(series, labels)


def read_file(source: Any, split: str) -> Table:
    """A signal file or folder (``long:FILE``: a CSV or Parquet file in long format, its first
    column the series id)."""
    path = signal_path(source)
    explicit_long = str(source).startswith(LONG_PREFIX)
    suffix = path.suffix.lower()
    if is_signal_folder(path):
        return read_folder(path, split)
    if suffix == ".ts":
        return Table(*read_ts(_ts_split(path, split)))
    if suffix in (".npy", ".npz"):
        return Table(*read_array_file(path, split))
    if suffix == ".parquet":
        _exists(path)
        if split == "test":
            raise UserError(f"{path}: a Parquet file holds one split; there is no test split")
        return read_parquet(path, explicit_long)
    if not explicit_long and is_timeeval_csv(path):  # one recording in columns
        if split == "test":
            raise UserError(f"{path}: a CSV file holds one split; there is no test split")
        return Table(*read_timeeval(path))
    return read_csv(path, split, explicit_long)


def _ts_split(path: Path, split: str) -> Path:
    """``NAME_TRAIN.ts`` names its test split ``NAME_TEST.ts`` beside it (the archive's layout)."""
    if split == "train":
        return path
    stem = path.stem
    if stem.upper().endswith("_TRAIN"):
        test = path.with_name(stem[:-len("_TRAIN")] + "_TEST" + path.suffix)
        if test.is_file():
            return test
    raise UserError(f"{path}: no test split (expected NAME_TRAIN.ts with NAME_TEST.ts beside it)")


def _exists(path: Path) -> None:
    if not path.is_file():
        raise MissingInput(f"{path}: no such file")
