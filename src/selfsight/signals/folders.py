"""A folder of per-recording CSV files read as signals: one file is one series, its columns the
channels and its rows the time steps. An optional header row names the channels (every file
must have the same ones); a time column and TimeEval's ``is_anomaly`` column are left out.
Labels come from a ``labels.csv`` of ``file,label`` rows or from first-level sub-folders, one
per class, as in an image folder; a folder with train/ and test/ sub-folders holds two splits.
Rows are named by the file's path within the folder. A file that cannot be read as a recording
(not text, empty, a ragged row, a text cell, other channels than most files have, not a regular
file) is skipped and listed with its reason, as an image folder skips a corrupt image; only a
folder without one readable recording is an error."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np

from selfsight.data.folder import _not_a_file, _read_label_csv  # the image folders' own checks
from selfsight.data.scan import Skipped, listed
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
Recording = tuple[list[str], np.ndarray]  # (channel names, (channels, steps) float64)


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
    read, skipped = readable_recordings(base, files)
    if not read:
        raise UserError(f"{base}: none of the {len(files)} CSV files is a readable recording "
                        f"({listed(skipped)})")
    kept = [i for i, file in enumerate(files) if file in read]
    channels = read[files[kept[0]]][0]
    prefix = "" if base == root else f"{split}/"
    notes = [f"folder of {len(kept)} CSV recordings (one series per file, rows are time steps, "
             f"{len(channels)} channel column(s) {channels[:8]}), {label_source}"]
    if skipped:
        notes.append(f"{len(skipped)} of {len(files)} CSV files skipped: {listed(skipped, 5)}")
    return Table([read[files[i]][1] for i in kept],
                 None if labels is None else [labels[i] for i in kept],
                 [prefix + files[i] for i in kept], tuple(notes),
                 tuple((str(base / file), reason) for file, reason in skipped))


def readable_recordings(base: Path, files: list[str]) -> tuple[dict[str, Recording], Skipped]:
    """({file: recording} of the files that read, [(file, reason)] of the others). The channels
    most files have are the folder's; a file with other columns is skipped too."""
    read: dict[str, Recording] = {}
    skipped: Skipped = []
    for file in files:
        path = base / file
        reason = _not_a_file(path)  # a named pipe is never opened: that would block
        if not reason:
            try:
                recording = read_recording(path)
                if recording is None:
                    reason = "empty file (no rows of data)"
                else:
                    read[file] = recording
            except UserError as error:  # the reader's line, less the path it starts with
                reason = str(error).removeprefix(str(path)).lstrip(",: ")
            except OSError as error:
                reason = f"cannot be read ({error.strerror or error})"
        if reason:
            skipped.append((file, reason))
    if read:
        common, count = Counter(tuple(r[0]) for r in read.values()).most_common(1)[0]
        for file in [f for f, r in read.items() if tuple(r[0]) != common]:
            skipped.append((file, f"columns {read.pop(file)[0]} where {count} other file(s) "
                                  f"have {list(common)} (every recording needs the same "
                                  "channels)"))
    return read, sorted(skipped)


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


def read_recording(path: Path) -> Recording | None:
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
