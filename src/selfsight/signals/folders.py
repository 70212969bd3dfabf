"""A folder of per-recording CSV files read as signals: one file is one series, its columns the
channels and its rows the time steps. An optional header row names the channels (every file
must have the same ones); a time column and TimeEval's ``is_anomaly`` column are left out.
Labels come from a ``labels.csv`` of ``file,label`` rows or from first-level sub-folders, one
per class, as in an image folder; a folder with train/ and test/ sub-folders holds two splits.
Rows are named by the file's path within the folder. An empty file is a series of length 0,
skipped and counted like any other."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from selfsight.data.folder import _read_label_csv  # the image folders' file,label reader
from selfsight.errors import UserError
from selfsight.signals.names import ANOMALY_LABEL
from selfsight.signals.tables import (
    TIME_COLUMNS,
    Table,
    csv_columns,
    csv_rows,
    find_column,
    numbers,
)

LABELS_FILE = "labels.csv"


def read_folder(root: Path, split: str) -> Table:
    """The ``split`` of a signal folder (:func:`selfsight.signals.names.is_signal_folder`)."""
    base = _split_root(root, split)
    files = recording_files(base)
    label_source, labels = "no labels", None
    if (base / LABELS_FILE).is_file():
        table, passed_over = _read_label_csv(base / LABELS_FILE, base)
        if passed_over:
            raise UserError(f"{base / LABELS_FILE}: {passed_over[0][0]}: {passed_over[0][1]}")
        files, labels = sorted(table), [table[f] for f in sorted(table)]
        label_source = f"labels from {LABELS_FILE}"
    else:
        parts = [f.split("/") for f in files]
        classes = {p[0] for p in parts if len(p) > 1}
        # One class folder alone is not a class split, except beside a training split's.
        if all(len(p) > 1 for p in parts) and (len(classes) > 1 or split == "test"):
            labels, label_source = [p[0] for p in parts], "labels from class sub-folders"
    if not files:
        raise UserError(f"{base}: no CSV files")
    read = [read_recording(base / f) for f in files]
    first = next((i for i, r in enumerate(read) if r is not None), None)
    if first is None:
        raise UserError(f"{base}: every CSV file is empty")
    channels, _ = read[first]
    series = []
    for file, recording in zip(files, read):
        if recording is None:
            series.append(np.empty((len(channels), 0)))
            continue
        if recording[0] != channels:
            raise UserError(f"{base / file}: columns {recording[0]} where {files[first]} has "
                            f"{channels} (every recording needs the same channels)")
        series.append(recording[1])
    prefix = "" if base == root else f"{split}/"
    note = (f"folder of {len(files)} CSV recordings (one series per file, rows are time steps, "
            f"{len(channels)} channel column(s) {channels[:8]}), {label_source}")
    return Table(series, labels, [prefix + f for f in files], (note,))


def recording_files(base: Path) -> list[str]:
    """CSV files under ``base`` (hidden ones and the labels file aside), as sorted paths
    relative to it."""
    found = []
    for folder, dirs, names in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            rel = (Path(folder) / name).relative_to(base).as_posix()
            if name.lower().endswith(".csv") and not name.startswith(".") and rel != LABELS_FILE:
                found.append(rel)
    return sorted(found)


def read_recording(path: Path) -> tuple[list[str], np.ndarray] | None:
    """(channel names, (channels, steps) float64) of one file; None when it has no rows."""
    rows = [r for r in csv_rows(path) if any(v.strip() for v in r)]
    if not rows:
        return None
    columns, first_row = csv_columns(path, rows)
    names = list(columns)
    time = find_column(names, TIME_COLUMNS)
    channels = [n for n in names if n != time and n.strip().lower() != ANOMALY_LABEL]
    if not channels:
        raise UserError(f"{path}: no channel columns (only {names})")
    hint = "one recording per file: columns are channels, rows are time steps"
    values = np.stack([numbers(columns[c], path, c, first_row, hint) for c in channels])
    return channels, values


def _split_root(root: Path, split: str) -> Path:
    """``root/split`` when the folder has train/ and test/; else the whole folder is "train"."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root / split
    if split == "test":
        raise UserError(f"{root}: no test split (a folder holds two splits as train/ and test/)")
    return root
