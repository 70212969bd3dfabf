"""The table and folder readers round-trip known arrays exactly (values, labels, row names), say
what layout they took, and turn each bad input into one line naming the file and row (or skip
and count it); a folder of CSV files pretrains and embeds through the CLI."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfsight.errors import UserError
from selfsight.signals.data import channel_stats, load_signal_splits, load_signals
from selfsight.signals.names import is_signal_source
from test_misuse import cli, one_error_line

CLASSES = ["run", "walk"]


def known(n=4, channels=2, length=5, seed=0):
    """(N, C, L) values exact in float32 (multiples of 1/4), and a label per series."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-400, 400, (n, channels, length)) / 4.0
    return x, [CLASSES[i % 2] for i in range(n)]


def long_rows(x, labels, ids, seed=1):
    """One row per (series, step), shuffled: the reader must regroup and reorder them."""
    rows = [[ids[i], t, *x[i, :, t], labels[i]] for i in range(len(x)) for t in range(x.shape[2])]
    order = np.random.default_rng(seed).permutation(len(rows))
    return [rows[k] for k in order]


def write_csv(path, header, rows):
    lines = [",".join(header)] if header else []
    lines += [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def expect(s, x, labels, rows):
    assert s.signals.dtype == np.float32 and np.array_equal(s.signals, x.astype(np.float32))
    assert [s.classes[k] for k in s.labels] == labels
    assert s.row_names() == rows


def test_parquet_one_series_per_row_round_trips(tmp_path, capsys):
    x, labels = known(channels=1)
    columns = {"label": labels} | {f"t{j}": x[:, 0, j] for j in range(x.shape[2])}
    pq.write_table(pa.table(columns), tmp_path / "w.parquet")
    expect(load_signals(tmp_path / "w.parquet"), x, labels, [f"w-train/{i}" for i in range(4)])
    assert "one series per row, 5 steps, labels in 'label'" in capsys.readouterr().err
    # An id column with one row per id names the rows; nulls are missing values, filled.
    columns = {"id": ["a", "b", "c", "d"], **columns, "t1": [None, *x[1:, 0, 1]]}
    pq.write_table(pa.table(columns), tmp_path / "named.parquet")
    s = load_signals(tmp_path / "named.parquet")
    assert s.row_names() == ["a", "b", "c", "d"]
    assert s.signals[0, 0, 1] == (x[0, 0, 0] + x[0, 0, 2]) / 2  # interpolated


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_long_format_regroups_shuffled_rows_by_id_and_time(tmp_path, capsys, suffix):
    x, labels = known(channels=3)
    ids = ["s7", "s2", "s9", "s1"]
    rows = long_rows(x, labels, ids)
    header = ["series_id", "time", "x", "y", "z", "label"]  # y: a channel, not the label
    path = tmp_path / f"long{suffix}"
    if suffix == ".csv":
        write_csv(path, header, rows)
    else:
        pq.write_table(pa.table({h: [r[k] for r in rows] for k, h in enumerate(header)}), path)
    s = load_signals(path)
    first_seen = list(dict.fromkeys(r[0] for r in rows))
    order = [ids.index(i) for i in first_seen]
    expect(s, x[order], [labels[i] for i in order], first_seen)
    err = capsys.readouterr().err
    assert ("long format (one row per time step): series id 'series_id', time 'time', "
            "3 channel(s) ['x', 'y', 'z'], labels in 'label': 4 series") in err


def test_long_prefix_takes_the_first_column_as_id_in_file_order(tmp_path):
    x, _ = known(n=3, channels=2, length=4)
    rows = [[f"p{i}", *x[i, :, t]] for i in range(3) for t in range(4)]
    path = write_csv(tmp_path / "subjects.csv", ["subject", "hip", "knee"], rows)
    s = load_signals(f"long:{path}")
    assert np.array_equal(s.signals, x.astype(np.float32)) and s.labels is None
    assert s.row_names() == ["p0", "p1", "p2"] and s.name == "subjects-train"
    assert "no time column (rows in file order)" in s.notes[0]
    # Without the prefix no id column is named: one series per row, and 'p0' is out of place.
    with pytest.raises(UserError, match=r"subjects\.csv, row 2, column 1: text 'p0' .*long:FILE"):
        load_signals(path)


def write_folder(root, x, labels, lengths, layout):
    """Each series as a CSV file (columns are channels, rows time steps), labelled by class
    sub-folders or by a labels.csv; returns the row names in the order they are read."""
    names = []
    for i, (series, label) in enumerate(zip(x, labels)):
        name = f"{label}/rec{i}.csv" if layout == "folders" else f"rec{i}.csv"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_csv(root / name, ["timestamp", "ax", "ay"],
                  [[t * 10, *series[:, t]] for t in range(lengths[i])])
        names.append(name)
    if layout == "labels.csv":
        write_csv(root / "labels.csv", ["file", "label"], zip(names, labels))
    (root / ".DS_Store").write_bytes(b"\0")  # hidden files are passed over
    return names


@pytest.mark.parametrize("layout", ["folders", "labels.csv"])
def test_folder_of_recordings_round_trips_with_labels_and_file_names(tmp_path, layout):
    x, labels = known(channels=2, length=6)
    names = write_folder(tmp_path, x, labels, [6] * 4, layout)
    assert is_signal_source(tmp_path)
    s = load_signals(tmp_path)
    order = sorted(range(4), key=lambda i: names[i])
    expect(s, x[order], [labels[i] for i in order], [names[i] for i in order])
    source = "class sub-folders" if layout == "folders" else "labels.csv"
    assert ("folder of 4 CSV recordings (one series per file, rows are time steps, 2 channel "
            f"column(s) ['ax', 'ay']), labels from {source}") == s.notes[0]


def test_folder_recordings_of_other_lengths_are_padded_or_cropped_and_stated(tmp_path):
    x, labels = known(n=3, channels=2, length=8)
    names = write_folder(tmp_path, x, labels, [8, 5, 3], "flat")
    (tmp_path / "rec9.csv").write_text("")  # an empty recording: skipped and counted
    s = load_signals(tmp_path)
    assert s.row_names() == names and s.skipped == [(f"{tmp_path}#rec9.csv",
                                                     "no values (a 0-length or all-missing "
                                                     "series)")]
    assert np.array_equal(s.signals[1, :, :5], x[1, :, :5])
    assert (s.signals[1, :, 5:] == x[1, :, 4:5]).all()  # continued with the last value
    assert "1 of 4 series skipped: no values (first: rec9.csv)" in s.notes
    assert "lengths 3..8: cropped or padded (with each series' last value) to 8 steps" in s.notes
    assert np.array_equal(load_signals(tmp_path, length=4).signals[0], x[0, :, :4])


def test_folder_with_train_and_test_splits(tmp_path):
    x, labels = known(n=6, channels=2, length=5)
    write_folder(tmp_path / "train", x[:4], labels[:4], [5] * 4, "folders")
    write_folder(tmp_path / "test", x[4:], labels[4:], [5] * 2, "folders")
    train, test = load_signal_splits(tmp_path)
    assert train.row_names()[0] == "train/run/rec0.csv"
    assert test.row_names() == ["test/run/rec0.csv", "test/walk/rec1.csv"]
    assert np.array_equal(test.signals, x[4:].astype(np.float32))
    assert [test.classes[k] for k in test.labels] == labels[4:]


def test_image_folders_and_empty_folders_are_not_signal_folders(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "labels.csv").write_text("file,label\na.png,x\n")
    (tmp_path / "img" / "a.png").write_bytes(b"\x89PNG")
    (tmp_path / "none").mkdir()
    assert not is_signal_source(tmp_path / "img") and not is_signal_source(tmp_path / "none")


@pytest.mark.parametrize(("name", "text", "message"), [
    ("ragged.csv", "id,time,x\na,0,1\na,1\n", r"ragged\.csv, row 3: 2 fields where the header "
     r"has 3 \(ragged row\)"),
    ("text.csv", "id,time,x,note\na,0,1,2\na,1,2,oops\n", r"text\.csv, row 3, column 'note': "
     r"text 'oops' where a number belongs \(long format"),
    ("labels.csv", "id,x,label\na,1,up\na,2,down\n", r"labels\.csv: series 'a' has labels "
     r"\['up', 'down'\]; a series has one label"),
    ("noid.csv", "id,time,x\na,0,1\n,1,2\n", r"noid\.csv, row 3: no series id in 'id'"),
    ("empty.csv", "", r"empty\.csv: no rows of data"),
    ("binary.csv", b"\x89PNG\r\n\x1a\n\xff\xfe", r"binary\.csv: not a text CSV file"),
    ("text.parquet", "a,b\n1,2\n", r"text\.parquet: not a readable Parquet file"),
    ("text.npy", "1,2,3\n", r"text\.npy: not a numpy file \(it starts with b'1,2,3\\n'"),
    ("empty.npz", "", r"empty\.npz: not a numpy file \(it starts with b''"),
])
def test_bad_files_are_one_line_naming_file_and_row(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(UserError, match=message):
        load_signals(path)


def test_bad_parquet_columns_name_the_column_and_row(tmp_path):
    pq.write_table(pa.table({"t0": [1.0, 2.0], "t1": ["3", "three"]}), tmp_path / "s.parquet")
    with pytest.raises(UserError, match=r"s\.parquet, row 2, column 't1': text 'three'"):
        load_signals(tmp_path / "s.parquet")
    pq.write_table(pa.table({"t0": pa.array([], pa.float64())}), tmp_path / "none.parquet")
    with pytest.raises(UserError, match=r"none\.parquet: no rows of data"):
        load_signals(tmp_path / "none.parquet")
    pq.write_table(pa.table({"t0": [[1.0], [2.0]]}), tmp_path / "lists.parquet")
    with pytest.raises(UserError, match=r"lists\.parquet, column 't0': list<"):
        load_signals(tmp_path / "lists.parquet")


def test_bad_recordings_in_a_folder_name_the_file(tmp_path):
    write_csv(tmp_path / "a.csv", ["ax", "ay"], [[1, 2], [3, 4]])
    write_csv(tmp_path / "b.csv", ["ax", "az"], [[1, 2]])
    with pytest.raises(UserError, match=r"b\.csv: columns \['ax', 'az'\] where a\.csv has "
                                        r"\['ax', 'ay'\]"):
        load_signals(tmp_path)
    write_csv(tmp_path / "b.csv", ["ax", "ay"], [[1, 2], [3]])
    with pytest.raises(UserError, match=r"b\.csv, row 3: 1 fields where the header has 2"):
        load_signals(tmp_path)
    write_csv(tmp_path / "b.csv", ["ax", "ay"], [[1, "x"]])
    with pytest.raises(UserError, match=r"b\.csv, row 2, column 'ay': text 'x'"):
        load_signals(tmp_path)
    for f in ("a.csv", "b.csv"):
        (tmp_path / f).write_text("")
    with pytest.raises(UserError, match="every CSV file is empty"):
        load_signals(tmp_path)


def test_a_constant_channel_is_stated_and_standardises_to_zeros(tmp_path):
    x, _ = known(channels=2)
    x[:, 1] = 3.5
    np.save(tmp_path / "c.npy", x)
    s = load_signals(tmp_path / "c.npy")
    assert any("channel(s) [2] constant: standardising would divide by zero" in n
               for n in s.notes)
    mean, std = channel_stats(s)
    assert mean[1] == 3.5 and std[1] == 1.0 and std[0] == pytest.approx(x[:, 0].std())


def test_cli_bad_file_is_one_line_and_no_run_folder(tmp_path, capsys):
    bad = write_csv(tmp_path / "bad.csv", None, [[1, 2, 3], [4, "oops", 6]])
    out = tmp_path / "run"
    code, err = cli(["pretrain", str(bad), "--max-steps", "1", "--out", str(out)], capsys)
    assert code == 2 and not out.exists()
    assert f"{bad}, row 2, column 2: text 'oops'" in one_error_line(err)


def test_cli_pretrain_and_embed_a_folder_of_recordings(tmp_path, capsys):
    x, labels = known(n=8, channels=2, length=24)
    data = tmp_path / "recordings"
    names = write_folder(data, x, labels, [24, 20, 16, 24, 24, 22, 24, 24], "folders")
    run, out = tmp_path / "run", tmp_path / "E.npy"
    succeeds(["pretrain", str(data), "--max-steps", "2", "--batch-size", "4", "--backbone-set",
              "channels=(8,16,16)", "--precision", "32-true", "--no-progress", "--out", str(run)],
             capsys)
    succeeds(["embed", str(run), str(data), "--out", str(out)], capsys)
    rows = json.loads((tmp_path / "E.npy.json").read_text())["files"]
    assert rows == sorted(names) and np.load(out).shape == (8, 16)


def succeeds(argv, capsys):
    code, err = cli(argv, capsys)
    assert code == 0, err


def test_wide_csv_with_an_id_column_names_its_rows(tmp_path):
    x, labels = known(channels=1, length=3)
    rows = [[f"r{i}", *x[i, 0], labels[i]] for i in range(4)]
    s = load_signals(write_csv(tmp_path / "w.csv", ["id", "t0", "t1", "t2", "class"], rows))
    expect(s, x, labels, ["r0", "r1", "r2", "r3"])
    assert s.notes[0] == "one series per row, 3 steps, named by 'id', labels in 'class'"
