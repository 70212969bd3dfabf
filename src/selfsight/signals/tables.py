"""Signal tables with named columns: CSV rows and Parquet files (through pyarrow) read as series.

Two layouts. Wide: one univariate series per row, the columns its time steps, an optional label
column. Long: one row per time step of a series (a series id column, an optional time column,
one column per channel, an optional label column), the layout of databases, pandas and tsfresh.
A table is long when its header has a series id column (``id``, ``series_id``, ...) and either
a time column or an id that repeats, or when the source is written ``long:FILE`` (then the first
column is the id, whatever its name); what was taken as what is stated in one note."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from selfsight.config import is_number
from selfsight.errors import UserError

Series = list[np.ndarray]  # each (channels, length_i) float64
Column = np.ndarray | list  # float64 values, or the cells (str or None) of a text column
LABEL_COLUMNS = ("label", "labels", "class", "target", "y")
LONG_LABEL_COLUMNS = LABEL_COLUMNS[:-1]  # in a long table x, y, z are an accelerometer's axes
ID_COLUMNS = ("id", "series_id", "series", "case_id", "sample_id", "recording", "unique_id")
TIME_COLUMNS = ("time", "timestamp", "t", "step", "time_step", "date", "datetime")
MISSING = ("", "nan", "na", "?")  # cells read as a missing value (NaN)


class Table(NamedTuple):
    """What a reader gives :func:`selfsight.signals.data.as_signal_set`: the raw series, their
    labels as text, their names (None: ``NAME/i``), lines stating how the file was read, and
    the files it passed over as (path, reason) (a folder's broken recordings)."""

    series: Series
    labels: list[str] | None = None
    rows: list[str] | None = None
    notes: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


def csv_rows(path: Path) -> list[list[str]]:
    """The rows of a UTF-8 CSV file; a binary or otherwise unreadable one is one line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return list(csv.reader(f))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text CSV file (not UTF-8)") from None
    except csv.Error as error:
        raise UserError(f"{path}: not a readable CSV file ({error})") from None


def is_header(row: list[str]) -> bool:
    """A first row of names: some cell filled and none a number."""
    return any(v.strip() for v in row) and all(not is_number(v) for v in row if v.strip())


def find_column(names: list[str], wanted: tuple[str, ...], taken: tuple[str | None, ...] = ()
                ) -> str | None:
    return next((n for n in names if n.strip().lower() in wanted and n not in taken), None)


def cell_number(cell: str | None, where: str, column: Any, hint: str) -> float:
    """One cell as a float, missing ones NaN; text is an error naming the row and column."""
    text = "" if cell is None else str(cell).strip()
    if text.lower() in MISSING:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{where}, column {column}: text {text[:20]!r} where a number belongs "
                        f"({hint})") from None


def numbers(values: Column, path: Path, name: str, first_row: int, hint: str) -> np.ndarray:
    """(rows,) float64 of a column; the first text cell an error naming its row."""
    if isinstance(values, np.ndarray):
        return values
    return np.array([cell_number(v, f"{path}, row {first_row + i}", repr(name), hint)
                     for i, v in enumerate(values)], dtype=np.float64)


def csv_columns(path: Path, rows: list[list[str]]) -> tuple[dict[str, Column], int]:
    """({name: cells}, file line of the first data row) of a CSV file with equal rows; a row
    with another number of fields is an error naming it. Without a header row (only with
    ``long:``, or in a recording) the columns are named ``1``, ``2``, ..."""
    rows = [r for r in rows if any(v.strip() for v in r)]
    if not rows:
        raise UserError(f"{path}: no rows of data")
    header = is_header(rows[0])
    names = ([v.strip() for v in rows[0]] if header
             else [str(i) for i in range(1, len(rows[0]) + 1)])
    if len(set(names)) != len(names):
        raise UserError(f"{path}: the header names a column twice ({names})")
    body = rows[1:] if header else rows
    for line, row in enumerate(body, start=2 if header else 1):
        if len(row) != len(names):
            raise UserError(f"{path}, row {line}: {len(row)} fields where "
                            f"{'the header' if header else 'row 1'} has {len(names)} "
                            "(ragged row)")
    return {n: [r[i] for r in body] for i, n in enumerate(names)}, 2 if header else 1


def parquet_columns(path: Path) -> dict[str, Column]:
    """{name: values} of a Parquet file: numbers as float64 (nulls NaN), other columns as text."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path).read()
    except (OSError, pa.ArrowException) as error:
        raise UserError(f"{path}: not a readable Parquet file ({error})") from None
    columns: dict[str, Column] = {}
    for name in table.column_names:
        column = table.column(name)
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            columns[name] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_temporal(kind):  # a time column: its order is what counts
            columns[name] = pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            columns[name] = column.to_pylist()
        else:
            raise UserError(f"{path}, column {name!r}: {kind} values; signal tables hold "
                            "numbers (and text in an id or label column)")
    if table.num_rows == 0:
        raise UserError(f"{path}: no rows of data")
    return columns


def read_parquet(path: Path, explicit_long: bool = False) -> Table:
    """A Parquet file, wide or long (see the module's docstring)."""
    columns = parquet_columns(path)
    return read_columns(columns, path, 1, explicit_long)


def read_columns(columns: dict[str, Column], path: Path, first_row: int,
                 explicit_long: bool = False) -> Table:
    """A table in either layout. ``first_row``: the row number of the first data row."""
    names = list(columns)
    id_column = names[0] if explicit_long else find_column(names, ID_COLUMNS)
    time = find_column(names, TIME_COLUMNS, (id_column,)) if id_column else None
    if id_column is not None:
        ids = [_key(v) for v in columns[id_column]]
        if explicit_long or time is not None or len(set(ids)) < len(ids):
            return read_long(columns, path, first_row, id_column, time)
    return read_wide(columns, path, first_row, id_column)


def read_wide(columns: dict[str, Column], path: Path, first_row: int, id_column: str | None
              ) -> Table:
    """One univariate series per row; ``id_column`` (unique values) names the rows."""
    label = find_column(list(columns), LABEL_COLUMNS, (id_column,))
    steps = [n for n in columns if n not in (id_column, label)]
    if not steps:
        raise UserError(f"{path}: no columns of values (only {list(columns)})")
    hint = "one series per row; only an id and a label column may hold text"
    values = np.stack([numbers(columns[n], path, n, first_row, hint) for n in steps], axis=1)
    labels = _labels(columns, label)
    rows = [_key(v) for v in columns[id_column]] if id_column else None
    note = (f"one series per row, {len(steps)} steps" + (f", named by '{id_column}'"
            if id_column else "") + (f", labels in '{label}'" if label else ""))
    return Table([v[None] for v in values], labels, rows, (note,))


def read_long(columns: dict[str, Column], path: Path, first_row: int, id_column: str,
              time: str | None) -> Table:
    """One row per time step: rows grouped by ``id_column`` (series in order of first
    appearance), ordered by ``time`` within a series when there is one, file order otherwise."""
    label = find_column(list(columns), LONG_LABEL_COLUMNS, (id_column, time))
    channels = [n for n in columns if n not in (id_column, time, label)]
    if not channels:
        raise UserError(f"{path}: long format (series id '{id_column}') but no channel columns")
    hint = "long format: only the id, time and label columns may hold text"
    values = np.stack([numbers(columns[c], path, c, first_row, hint) for c in channels])
    ids = np.array([_key(v) for v in columns[id_column]], dtype=object)
    missing = np.flatnonzero(ids == "")
    if len(missing):
        raise UserError(f"{path}, row {first_row + missing[0]}: no series id in '{id_column}'")
    _, first, series_of = np.unique(ids, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))[series_of]  # series numbered by first appearance
    keys = [rank] if time is None else [_time_order(columns[time]), rank]
    order = np.lexsort(keys)  # by series, then by time; stable, so file order breaks ties
    starts = np.flatnonzero(np.diff(rank[order], prepend=-1))
    groups = np.split(order, starts[1:])
    labels = None
    if label is not None:
        cells = _labels(columns, label)
        labels = []
        for group in groups:
            found = dict.fromkeys(cells[i] for i in group)
            if len(found) > 1:
                raise UserError(f"{path}: series {ids[group[0]]!r} has labels "
                                f"{list(found)[:3]}; a series has one label")
            labels.append(next(iter(found)))
    note = (f"long format (one row per time step): series id '{id_column}', "
            f"{f'time {time!r}' if time else 'no time column (rows in file order)'}, "
            f"{len(channels)} channel(s) {channels[:8]}"
            f"{f', labels in {label!r}' if label else ''}: {len(groups)} series")
    return Table([values[:, g] for g in groups], labels, [str(ids[g[0]]) for g in groups],
                 (note,))


def _labels(columns: dict[str, Column], label: str | None) -> list[str] | None:
    if label is None:
        return None
    return [_key(v) for v in columns[label]]


def _key(value: Any) -> str:
    """A cell as text: ``7.0`` from a number column reads ``7``, as it was written."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _time_order(values: Column) -> np.ndarray:
    """Sort keys of a time column: numbers as numbers, text (ISO dates) in text order."""
    if isinstance(values, np.ndarray):
        return values
    cells = [_key(v) for v in values]
    if all(is_number(c) for c in cells):
        return np.array([float(c) for c in cells])
    return np.unique(np.array(cells, dtype=object), return_inverse=True)[1]
