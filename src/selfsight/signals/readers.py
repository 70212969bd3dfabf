"""Readers for signal files. Each returns raw series, one (channels, length_i) float array per
row, lengths free, NaNs kept, plus labels as text or None; :mod:`selfsight.signals.data` makes
them one array. A file that cannot be read is one ``UserError`` line naming the file and row."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from selfsight.config import is_number
from selfsight.errors import MissingInput, UserError
from selfsight.signals.names import bundled_names, bundled_root

Series = list[np.ndarray]  # each (channels, length_i) float64
LABEL_COLUMNS = ("label", "labels", "class", "target", "y")
ARRAY_KEYS = {"train": (("X", "x", "data", "X_train"), ("y", "labels", "y_train")),
              "test": (("X_test", "x_test"), ("y_test", "labels_test"))}


def read_bundled(name: str, split: str) -> tuple[Series, list[str] | None]:
    """``uea:NAME`` / ``ucr:NAME``: aeon's bundled NAME_TRAIN.ts / NAME_TEST.ts, read from the
    wheel's own folder (never downloaded)."""
    set_name = name.split(":", 1)[1]
    root = bundled_root()
    if root is None:
        raise UserError(f"{name}: the built-in signal sets come with aeon (pip install aeon)")
    if set_name not in bundled_names():
        raise MissingInput(f"{name}: not a bundled set (no download is made); bundled: "
                           f"{', '.join(bundled_names())}")
    return read_ts(root / set_name / f"{set_name}_{split.upper()}.ts")


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
            if key is None:
                raise UserError(f"{path}: no {split} array (expected one of {list(x_keys)}; "
                                f"found {loaded.files})")
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


def read_csv(path: Path, split: str) -> tuple[Series, list[str] | None]:
    """One univariate series per row. An optional header row (all text) may name a label
    column (``label``, ``class``, ``target``, ``y``); empty cells are missing values (NaN).
    Without a header rows may differ in length (variable-length series); with one, every row
    has the header's fields. A text cell elsewhere is an error naming its row and column."""
    _exists(path)
    if split == "test":
        raise UserError(f"{path}: a CSV file holds one split; there is no test split")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text CSV file (not UTF-8)") from None
    header, label_col, start = None, None, 0
    if rows and rows[0] and all(not is_number(v) for v in rows[0] if v.strip()):
        header, start = [v.strip().lower() for v in rows[0]], 1
        label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
    series, labels = [], [] if label_col is not None else None
    for line, row in enumerate(rows[start:], start=start + 1):
        if header is not None and row and len(row) != len(header):
            raise UserError(f"{path}, row {line}: {len(row)} fields where the header has "
                            f"{len(header)} (ragged row)")
        values = []
        for column, cell in enumerate(row, start=1):
            if column - 1 == label_col:
                labels.append(cell.strip())
                continue
            values.append(_cell(cell, path, line, column))
        series.append(np.asarray(values, dtype=np.float64).reshape(1, -1))
    if not series:
        raise UserError(f"{path}: no rows of data")
    return series, labels


def read_file(path: Any, split: str) -> tuple[Series, list[str] | None]:
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".ts":
        return read_ts(_ts_split(path, split))
    if suffix in (".npy", ".npz"):
        return read_array_file(path, split)
    return read_csv(path, split)


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


def _cell(cell: str, path: Path, line: int, column: int) -> float:
    text = cell.strip()
    if not text or text.lower() in ("nan", "na", "?"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{path}, row {line}, column {column}: text {text[:20]!r} where a number "
                        "belongs (one series per row; only a header row and a label column may "
                        "hold text)") from None
