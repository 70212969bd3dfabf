"""Signal readers on tiny files written here: each format, each bad input (a clear one-line
error naming the file and row, or skipped and counted), lengths and NaNs stated."""

import numpy as np
import pytest

from selfsight.errors import MissingInput, UserError
from selfsight.signals.data import (
    channel_stats,
    fill_missing,
    fit_length,
    load_signal_splits,
    load_signals,
)
from selfsight.signals.names import bundled_names, is_signal_source


def write(path, text):
    path.write_text(text)
    return path


def test_csv_one_series_per_row_with_header_and_labels(tmp_path):
    f = write(tmp_path / "s.csv", "label,t0,t1,t2\nb,1,2,3\na,4,5,6\nb,7,8,9\n")
    s = load_signals(f)
    assert s.signals.shape == (3, 1, 3) and s.signals.dtype == np.float32
    assert s.classes == ["a", "b"] and s.labels.tolist() == [1, 0, 1]
    assert s.signals[1, 0].tolist() == [4, 5, 6]
    assert s.row_names()[0] == "s-train/0"


def test_csv_text_cell_names_file_row_and_column(tmp_path):
    f = write(tmp_path / "bad.csv", "1,2,3\n4,oops,6\n")
    with pytest.raises(UserError, match=r"bad\.csv, row 2, column 2: text 'oops'"):
        load_signals(f)


def test_csv_ragged_row_under_a_header_is_an_error_naming_the_row(tmp_path):
    f = write(tmp_path / "r.csv", "t0,t1,t2\n1,2,3\n4,5\n")
    with pytest.raises(UserError, match=r"r\.csv, row 3: 2 fields where the header has 3"):
        load_signals(f)


def test_csv_rows_of_other_lengths_are_padded_and_stated(tmp_path, capsys):
    f = write(tmp_path / "v.csv", "1,2,3,4\n5,6\n")
    s = load_signals(f)
    assert s.signals.shape == (2, 1, 4)
    assert s.signals[1, 0].tolist() == [5, 6, 6, 6]  # continued with the last value
    assert "lengths 2..4" in capsys.readouterr().err and "lengths 2..4" in s.notes[0]


def test_nans_are_filled_counted_and_stated(tmp_path, capsys):
    f = write(tmp_path / "n.csv", "1,,3,nan\n1,2,3,4\n")
    s = load_signals(f)
    assert s.signals[0, 0].tolist() == [1, 2, 3, 3]
    assert "2 missing values (NaN) filled" in capsys.readouterr().err


def test_empty_and_all_missing_series_are_skipped_and_counted(tmp_path):
    f = write(tmp_path / "e.csv", "1,2,3\n\n,,\n4,5,6\n")
    s = load_signals(f)
    assert len(s) == 2 and len(s.skipped) == 2
    assert s.skipped[0][0].endswith("e.csv#2")
    assert any("2 of 4 series skipped" in n for n in s.notes)


def test_only_empty_series_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no series with values"):
        load_signals(write(tmp_path / "z.csv", "\n,\n"))


def test_npy_and_npz_with_test_split(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 2, 7))
    np.save(tmp_path / "a.npy", x)
    s = load_signals(tmp_path / "a.npy")
    assert s.signals.shape == (5, 2, 7) and s.labels is None
    with pytest.raises(UserError, match="no test split"):
        load_signals(tmp_path / "a.npy", "test")
    np.savez(tmp_path / "b.npz", X=x, y=np.array([0, 1, 0, 1, 1]), X_test=x[:2, :, :5],
             y_test=np.array([1, 0]))
    train, test = load_signal_splits(tmp_path / "b.npz")
    assert test.length == 7  # the training length
    assert test.labels.tolist() == [1, 0] and train.classes == ["0", "1"]


def test_npy_of_text_and_of_bad_shape_are_errors(tmp_path):
    np.save(tmp_path / "t.npy", np.array([["a", "b"]]))
    with pytest.raises(UserError, match="must be numbers"):
        load_signals(tmp_path / "t.npy")
    np.save(tmp_path / "s.npy", np.zeros((2, 2, 2, 2)))
    with pytest.raises(UserError, match=r"\(N, length\) or \(N, channels, length\)"):
        load_signals(tmp_path / "s.npy")


def test_ts_file_with_its_test_split(tmp_path):
    header = ("@problemName tiny\n@timeStamps false\n@missing true\n@univariate false\n"
              "@dimensions 2\n@equalLength false\n@classLabel true up down\n@data\n")
    write(tmp_path / "tiny_TRAIN.ts", header + "1,2,3:4,5,6:up\n1,?,3:4,5,6:down\n")
    write(tmp_path / "tiny_TEST.ts", header + "1,2:3,4:down\n")
    train, test = load_signal_splits(tmp_path / "tiny_TRAIN.ts")
    assert train.signals.shape == (2, 2, 3) and test.signals.shape == (1, 2, 3)
    assert train.signals[1, 0].tolist() == [1, 2, 3]  # the '?' filled
    assert test.labels.tolist() == [train.classes.index("down")]


def test_broken_ts_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"broken\.ts: not a readable \.ts file"):
        load_signals(write(tmp_path / "broken.ts",
                           "@problemName x\n@classLabel true up\n@data\n1,abc:up\n"))


def test_bundled_sets_and_an_unknown_name():
    assert {"BasicMotions", "GunPoint"} <= set(bundled_names())
    train, test = load_signal_splits("uea:BasicMotions")
    assert train.signals.shape == (40, 6, 100) and test.signals.shape == (40, 6, 100)
    assert train.classes == ["badminton", "running", "standing", "walking"]
    with pytest.raises(MissingInput, match=r"bundled: .*BasicMotions"):
        load_signals("ucr:NoSuchSet")
    with pytest.raises(MissingInput, match="no such file"):
        load_signals("missing.csv")


def test_which_sources_are_signals():
    assert is_signal_source("uea:BasicMotions") and is_signal_source("x/y.ts")
    assert not is_signal_source("fashion-mnist") and not is_signal_source("photos")


def test_length_helpers_and_channel_stats():
    assert fit_length(np.arange(5.0)[None], 3).tolist() == [[0, 1, 2]]
    assert fill_missing(np.array([[np.nan, 1.0, np.nan, 3.0]])).tolist() == [[1, 1, 2, 3]]
    s = load_signals(np.stack([np.ones((2, 4)), np.stack([np.arange(4.0), np.ones(4)])]))
    mean, std = channel_stats(s)
    assert mean[0] == pytest.approx(1.25) and std[1] == 1.0  # constant channel: std 1
