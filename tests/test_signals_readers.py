"""The table and folder readers round-trip known arrays exactly (values, labels, row names), say
what layout they took, and turn each bad input into one line naming the file and row (or skip
and count it); a folder of CSV files pretrains and embeds through the CLI."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfsight.backbones import Backbone, BackboneConfig
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
    write_csv(tmp_path / "rec9.csv", ["ax", "ay"], [[1, ""], [2, ""]])  # a channel all missing
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


BROKEN_RECORDINGS = {  # file: (what it holds, the reason it is skipped)
    "text.csv": ("ax,ay\n1,2\n3,oops\n", "row 3, column 'ay': text 'oops' where a number "
                 "belongs"),
    "empty.csv": ("", "empty file (no rows of data)"),
    "garbage.csv": (b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x81garbage", "not a text CSV file "
                    "(not UTF-8)"),
    "ragged.csv": ("ax,ay\n1,2\n3\n", "row 3: 1 fields where the header has 2 (ragged row)"),
    "other.csv": ("ax,az\n1,2\n", "columns ['ax', 'az'] where 2 other file(s) have "
                  "['ax', 'ay']"),
}


def broken_folder(root):
    """Two good recordings (a.csv, c.csv) among one broken file of every kind."""
    root.mkdir(exist_ok=True)
    x = known(n=2, channels=2, length=3)[0]
    for name, series in zip(("a.csv", "c.csv"), x):
        write_csv(root / name, ["ax", "ay"], series.T.tolist())
    for name, (content, _) in BROKEN_RECORDINGS.items():
        (root / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return x


def test_broken_recordings_in_a_folder_are_skipped_listed_and_stated(tmp_path, capsys):
    x = broken_folder(tmp_path)
    s = load_signals(tmp_path)
    assert s.row_names() == ["a.csv", "c.csv"] and np.array_equal(s.signals, x)
    reasons = dict(s.skipped)
    assert set(reasons) == {str(tmp_path / name) for name in BROKEN_RECORDINGS}
    for name, (_, reason) in BROKEN_RECORDINGS.items():
        assert reasons[str(tmp_path / name)].startswith(reason), name
    lines = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert len(lines) == 1 and "5 of 7 CSV files skipped: " in lines[0]
    assert all(f"{name}: {reason}" in lines[0]
               for name, (_, reason) in BROKEN_RECORDINGS.items())


def test_a_folder_without_one_readable_recording_is_one_line(tmp_path):
    broken_folder(tmp_path)
    for good in ("a.csv", "c.csv", "other.csv"):
        (tmp_path / good).unlink()
    with pytest.raises(UserError) as error:
        load_signals(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path}: none of the 4 CSV files is a readable recording")
    assert "\n" not in message and "empty.csv: empty file" in message
    assert "; ... (1 more)" in message  # the first three named


def test_cli_pretrain_lists_the_skipped_recordings(tmp_path, capsys):
    data = tmp_path / "recordings"
    broken_folder(data)
    run = tmp_path / "run"
    succeeds(["pretrain", str(data), "--max-steps", "1", "--batch-size", "2", "--backbone-set",
              "channels=(4,4,4)", "--precision", "32-true", "--no-progress", "--out", str(run)],
             capsys)
    listed = json.loads((run / "skipped_files.json").read_text())
    assert listed["count"] == 5
    assert {entry["file"] for entry in listed["files"]} == {str(data / name)
                                                            for name in BROKEN_RECORDINGS}


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


BAD_INPUTS = {  # file: (what it holds, the one error line, or None: read, with this stated)
    "ragged.csv": ("t0,t1,t2\n1,2,3\n4,5\n",
                   "ragged.csv, row 3: 2 fields where the header has 3 (ragged row)"),
    "text.csv": ("t0,t1,t2\n1,2,3\n4,five,6\n", "text.csv, row 3, column 2: text 'five'"),
    "rank4.npy": (np.zeros((2, 1, 3, 3)), "rank4.npy: signals must be (N, length) or "
                  "(N, channels, length), got shape (2, 1, 3, 3)"),
    "nans.csv": ("1,,3\n4,5,nan\n7,8,9\n", None),
    "zero_length.npz": (np.full((3, 1, 3), np.nan), None),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_cli_embed_of_bad_input_is_one_line_or_skipped_and_counted(tmp_path, capsys, name):
    Backbone(BackboneConfig(name="resnet1d", in_chans=1, image_size=3, mean=(0.0,), std=(1.0,),
                            model_kwargs={"channels": (4, 4, 4)})).save(tmp_path / "run")
    content, error = BAD_INPUTS[name]
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, content)
    elif name.endswith(".npz"):  # a series with no values between two with values
        content[0, 0], content[2, 0] = [1, 2, 3], [4, 5, 6]
        np.savez(path, X=content)
    else:
        path.write_text(content)
    out = tmp_path / "E.npy"
    code, err = cli(["embed", str(tmp_path / "run"), str(path), "--out", str(out)], capsys)
    if error is not None:
        assert code == 2 and not out.exists()
        assert f"{tmp_path}/{error}" in one_error_line(err)
        return
    assert code == 0 and "Traceback" not in err, err
    written = json.loads((tmp_path / "E.npy.json").read_text())
    if name == "nans.csv":
        assert written["count"] == 3 and "2 missing values (NaN) filled" in err
    else:
        assert written["count"] == 2 and written["skipped_count"] == 1
        assert written["skipped"][0]["file"] == f"{path}#2"
        assert "1 of 3 series skipped: no values (first: row 2)" in err
