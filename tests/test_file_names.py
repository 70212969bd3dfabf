"""Any file name the file system allows goes through every output and comes back exactly
(:func:`selfsight.files.portable_name`); every folder entry not used is listed with its reason;
labels CSVs that point outside their folder, list undecodable files or are not UTF-8 are
handled; ``--no-progress`` silences the decoding bar."""

from __future__ import annotations

import csv
import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selfsight.backbones import Backbone, BackboneConfig
from selfsight.classify import save_classifier
from selfsight.cli import main
from selfsight.data import load_folder, write_skipped_report
from selfsight.data.folder import read_resized, scan_entries
from selfsight.errors import UserError
from selfsight.eval.finetune import Classifier
from selfsight.file_names import display_name, native_name, portable_name

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names")

ODD = b"caf\xe9.png"  # Latin-1 bytes: not UTF-8
LITERAL = b"a\\x41.png"  # a real backslash, then text that looks like an escape
DOLLAR = b"dollar $x^{$.png"  # two dollars: matplotlib would read mathtext
ODD_NAMES = (ODD, LITERAL, DOLLAR)


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (opening a FIFO blocks until a writer comes)."""
    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def save_png(path: bytes | str | Path, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(pixels).save(os.fsdecode(path), format="PNG")


def odd_folder(root: Path, plain: int = 9) -> Path:
    """``plain`` ordinary PNGs plus one PNG under each name of ``ODD_NAMES``."""
    root.mkdir(parents=True)
    for i in range(plain):
        save_png(root / f"{i}.png", i)
    for i, name in enumerate(ODD_NAMES):
        save_png(os.fsencode(root) + b"/" + name, 100 + i)
    return root


def original(root: Path, name: bytes) -> bytes:
    return os.fsencode(root) + b"/" + name


def assert_round_trips(written: list[str], root: Path) -> None:
    """Every odd name is in ``written`` under the convention and converts back exactly."""
    back = {os.fsencode(native_name(name)) for name in written}
    for name in ODD_NAMES:
        assert original(root, name) in back, name
    assert portable_name(os.fsdecode(original(root, ODD))) in written
    assert all(name.encode("utf-8") for name in written)  # all of it is UTF-8 text


def tiny_run(directory: Path) -> Path:
    torch.manual_seed(0)
    Backbone(BackboneConfig(name="resnet18", in_chans=1, image_size=28, stem_stride=2,
                            model_kwargs={"channels": (8, 16, 32, 64)}, mean=(0.29,),
                            std=(0.35,))).save(directory)
    return directory


# --------------------------------------------------------------------------------------------
# The convention


@pytest.mark.parametrize("raw", [b"plain.png", "café.png".encode(), ODD, LITERAL, b"\\\xe9",
                                 b"x\\x5c\\xZZ\\", b"\xff\xfe/\xe9\\xe9", b"new\nline.png"])
def test_portable_names_round_trip_exactly(raw):
    name = os.fsdecode(raw)
    written = portable_name(name)
    written.encode("utf-8")  # always UTF-8 text
    assert os.fsencode(native_name(written)) == raw
    if b"\\" not in raw and raw.decode("utf-8", "replace").encode() == raw:
        assert written == name  # valid UTF-8 without a backslash: unchanged
    shown = display_name(name)
    assert shown.isprintable() and display_name(shown) == shown


def test_portable_name_of_latin1_bytes():
    assert portable_name(os.fsdecode(ODD)) == "caf\\xe9.png"
    assert portable_name(os.fsdecode(LITERAL)) == "a\\x5cx41.png"
    assert native_name("caf\\xe9.png") == os.fsdecode(ODD)


# --------------------------------------------------------------------------------------------
# Every output that records file names


def test_predict_and_embed_write_odd_names(tmp_path, capsys):
    images = odd_folder(tmp_path / "images")
    (images / "broken.png").write_bytes(b"not a png")
    run = tiny_run(tmp_path / "run")
    torch.manual_seed(0)
    model = Classifier(Backbone(BackboneConfig(
        name="resnet18", in_chans=1, image_size=28, stem_stride=2,
        model_kwargs={"channels": (8, 16, 32, 64)}, mean=(0.29,), std=(0.35,))), 2).eval()
    classifier = save_classifier(model, tmp_path / "clf", {"classes": ["a", "b"]})
    table = tmp_path / "out" / "predictions.csv"
    assert main(["predict", str(classifier), str(images), "--out", str(table),
                 "--no-progress"]) == 0
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert_round_trips([row["file"] for row in rows], images)
    summary = json.loads((tmp_path / "out" / "predictions.csv.json").read_text("utf-8"))
    assert summary["count"] == 12 and summary["skipped_count"] == 1
    assert "decoding" not in capsys.readouterr().err

    out = tmp_path / "emb" / "features.npy"
    assert main(["embed", str(run), str(images), "--out", str(out), "--no-progress"]) == 0
    meta = json.loads(out.with_name("features.npy.json").read_text("utf-8"))
    assert np.load(out).shape[0] == len(meta["files"]) == 12
    assert_round_trips(meta["files"], images)
    assert meta["files"] == [row["file"] for row in rows]  # one convention, one order
    assert "decoding" not in capsys.readouterr().err


def test_explore_writes_odd_names_in_both_csvs(tmp_path, capsys):
    images = odd_folder(tmp_path / "images")
    run = tiny_run(tmp_path / "run")
    assert main(["explore", str(run), str(images), "--max-clusters", "3", "--suggest", "4",
                 "--no-progress"]) == 0
    assert "decoding" not in capsys.readouterr().err
    with (run / "eval" / "images_clusters.csv").open(newline="", encoding="utf-8") as f:
        clusters = list(csv.DictReader(f))
    assert len(clusters) == 12
    assert_round_trips([row["file"] for row in clusters], images)
    with (run / "eval" / "images_to_label.csv").open(newline="", encoding="utf-8") as f:
        picked = list(csv.DictReader(f))
    assert len(picked) == 4
    assert {row["file"] for row in picked} <= {row["file"] for row in clusters}


def test_anomaly_fit_and_score_write_odd_names_and_overlays(tmp_path, capsys):
    images = odd_folder(tmp_path / "images")
    run = tiny_run(tmp_path / "run")
    assert main(["anomaly", "fit", str(run), str(images), "--set", "coreset=0.5",
                 "--no-progress"]) == 0
    out = tmp_path / "scores"
    assert main(["anomaly", "score", str(run / "anomaly"), str(images), "--out", str(out),
                 "--overlays", "12", "--no-progress"]) == 0
    assert "decoding" not in capsys.readouterr().err
    result = json.loads((out / "scores.json").read_text("utf-8"))
    assert result["count"] == 12
    assert_round_trips([r["file"] for r in result["results"]], images)
    overlays = sorted(p.name for p in (out / "overlays").glob("*.png"))
    assert len(overlays) == 12
    odd = portable_name(os.fsdecode(ODD)).removesuffix(".png")
    assert any(name.startswith(odd + "_") for name in overlays), overlays
    assert all(name.encode("utf-8") for name in overlays)


def test_segment_lists_odd_names_and_skipped_entries(tmp_path):
    images = odd_folder(tmp_path / "images", plain=1)
    os.symlink("nowhere.png", images / "dangling.png")
    folder = read_resized(images, 16, 1, progress=False)
    assert len(folder.files) == 4
    assert [entry["file"] for entry in folder.skipped] == ["dangling.png"]
    assert "broken symlink" in folder.skipped[0]["error"]


# --------------------------------------------------------------------------------------------
# Folder scans: every entry passed over is listed


def test_scan_lists_every_entry_it_passes_over(tmp_path):
    images = odd_folder(tmp_path / "images", plain=3)
    (images / "sub").mkdir()
    save_png(images / "sub" / "inner.png", 7)
    os.symlink("nowhere.png", images / "dangling.png")
    os.symlink("self.png", images / "self.png")  # a symlink loop
    os.symlink("..", images / "sub" / "up")  # a folder loop: must not recurse forever
    os.symlink("sub", images / "again")  # a second path to a scanned folder
    os.mkfifo(images / "pipe.png")  # never opened: opening blocks
    Image.new("L", (8, 8)).save(images / "anim.gif")
    (images / "notes.txt").write_text("not an image")
    (images / ".hidden.png").write_bytes(b"")
    with deadline(60):
        loaded = load_folder(images, size=16, cache_dir=tmp_path / "cache", progress=False)
        report = write_skipped_report(loaded, tmp_path / "run")
    assert len(loaded) == 3 + 3 + 1
    listed = json.loads(report.read_text("utf-8"))
    reasons = {Path(entry["file"]).relative_to(images).as_posix(): entry["reason"]
               for entry in listed["files"]}
    assert listed["count"] == len(listed["files"]) == len(reasons) == 8
    assert "broken symlink" in reasons["dangling.png"]
    assert "symlink loop" in reasons["self.png"]
    assert "symlink loop" in reasons["sub/up"]
    assert "already scanned as 'sub'" in reasons["again"]
    assert "FIFO" in reasons["pipe.png"]
    assert "'.gif'" in reasons["anim.gif"] and "'.txt'" in reasons["notes.txt"]
    assert "hidden" in reasons[".hidden.png"]
    assert ".selfsight-cache" not in json.dumps(listed)  # selfsight's own cache is not listed
    # The same scan decides what read_resized (segment) reads and lists.
    assert {entry["file"] for entry in read_resized(images, 16, 1, False).skipped} == \
        set(reasons)


def test_pretrain_writes_skipped_files_json_with_odd_names(tmp_path):
    images = odd_folder(tmp_path / "images", plain=13)
    os.mkfifo(images / "pipe.png")
    (images / "broken.png").write_bytes(b"not a png")
    Path(os.fsdecode(original(images, b"caf\xe9 broken.png"))).write_bytes(b"not a png")
    run = tmp_path / "run"
    with deadline(120):
        assert main(["pretrain", str(images), "--image-size", "16", "--max-steps", "1",
                     "--batch-size", "8", "--out", str(run), "--backbone-set",
                     "stem_stride=2", "--backbone-set", "channels=(8,16,32,64)", "--set",
                     "proj_hidden_dim=32", "--precision", "32-true", "--no-progress"]) == 0
    listed = json.loads((run / "skipped_files.json").read_text("utf-8"))
    files = {os.fsencode(native_name(entry["file"])) for entry in listed["files"]}
    assert listed["count"] == 3 and files == {
        original(images, b"pipe.png"), original(images, b"broken.png"),
        original(images, b"caf\xe9 broken.png")}


# --------------------------------------------------------------------------------------------
# Labels CSVs


def labelled(tmp_path: Path) -> Path:
    images = odd_folder(tmp_path / "images", plain=3)
    (images / "broken.png").write_bytes(b"not a png")
    return images


@pytest.mark.parametrize("cell", ["../outside.png", "ABSOLUTE"])
def test_labels_csv_row_outside_its_folder_is_refused(tmp_path, cell):
    images = labelled(tmp_path)
    save_png(tmp_path / "outside.png", 5)
    cell = str(tmp_path / "outside.png") if cell == "ABSOLUTE" else cell
    table = tmp_path / "labels.csv"
    table.write_text(f"file,label\n0.png,a\n{cell},b\n", encoding="utf-8")
    with pytest.raises(UserError, match="row 3") as error:
        load_folder(images, size=16, labels=table, progress=False)
    message = str(error.value)
    assert "\n" not in message and str(table) in message and "outside" in message
    assert cell in message


def test_labels_csv_accepts_paths_inside_written_any_way(tmp_path):
    images = labelled(tmp_path)
    table = tmp_path / "labels.csv"
    table.write_text(f"file,label\n{images / '0.png'},a\n./1.png,b\nsub/../2.png,b\n"
                     f"{portable_name(os.fsdecode(ODD))},a\n", encoding="utf-8")
    loaded = load_folder(images, size=16, labels=table, progress=False)
    assert len(loaded) == 4 and loaded.classes == ["a", "b"]
    assert os.fsencode(loaded.files[-1]) == original(images, ODD)


def test_labels_csv_lists_undecodable_and_unreadable_files_as_skipped(tmp_path):
    images = labelled(tmp_path)
    os.mkfifo(images / "pipe.png")
    table = tmp_path / "labels.csv"
    table.write_text("file,label\n0.png,a\n1.png,b\nbroken.png,a\npipe.png,b\n",
                     encoding="utf-8")
    with deadline(60):
        loaded = load_folder(images, size=16, labels=table, progress=False)
    assert len(loaded) == 2
    report = json.loads(write_skipped_report(loaded, tmp_path / "run").read_text("utf-8"))
    reasons = {Path(entry["file"]).name: entry["reason"] for entry in report["files"]}
    assert report["count"] == 2 and set(reasons) == {"broken.png", "pipe.png"}
    assert "FIFO" in reasons["pipe.png"]


def test_latin1_labels_csv_is_a_one_line_error(tmp_path, capsys):
    images = labelled(tmp_path)
    table = tmp_path / "labels.csv"
    table.write_bytes("file,label\n0.png,caf\xe9\n1.png,th\xe9\n".encode("latin-1"))
    with pytest.raises(UserError) as error:
        load_folder(images, size=16, labels=table, progress=False)
    message = str(error.value)
    assert "\n" not in message and str(table) in message
    assert "not UTF-8" in message and "line 2" in message and "0xe9" in message
    run = tiny_run(tmp_path / "run")
    assert main(["finetune", str(run), "--data", str(images), "--labels", str(table),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not UTF-8" in err and len(err.splitlines()) == 1


def test_scan_of_a_folder_without_images_names_what_it_passed_over(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "anim.gif").write_bytes(b"GIF89a")
    with pytest.raises(UserError, match=r"anim\.gif"):
        scan_entries(empty)
