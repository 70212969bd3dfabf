"""What outputs on signals are named and called: files named after a data source
(``uea:BasicMotions``) are allowed on every file system, and printed counts and rates are of
series, not images, for a signal run (export, embed, evaluate's details, the report)."""

import re

import numpy as np
import pytest
import torch

from selfsight.backbones import Backbone, BackboneConfig
from selfsight.cli import main
from selfsight.export import export_onnx
from selfsight.file_names import file_stem
from selfsight.reports.page import run_facts
from selfsight.results import Compute, EvalResult, ExportResult
from selfsight.run_folder import RunFolder
from selfsight.signals.data import channel_stats, load_signals
from selfsight.summaries import detail_rows, summary_lines

WINDOWS_REFUSES = re.compile(r'[<>:"/\\|?*\x00-\x1f]|[. ]$|^(CON|PRN|AUX|NUL|COM\d|LPT\d)(\.|$)',
                             re.IGNORECASE)


pytestmark = pytest.mark.usefixtures("single_thread")  # one thread (conftest.one_thread)


@pytest.mark.parametrize(("name", "stem"), [
    ("uea:BasicMotions", "uea-BasicMotions"), ("tsad:KDD-TSAD_135", "tsad-KDD-TSAD_135"),
    ('a<b>c"d|e?f*g', "a-b-c-d-e-f-g"), ("back\\slash", "back-slash"), ("tab\there", "tab-here"),
    ("dots...", "dots"), ("CON", "_CON"), ("com1.csv", "_com1.csv"), ("", "data"),
    ("parts", "parts"), ("café 2.npz", "café 2.npz"), ("CONTROL", "CONTROL")])
def test_file_stems_are_allowed_on_windows_and_stable(name, stem):
    assert file_stem(name) == stem
    assert not WINDOWS_REFUSES.search(stem + ".json") and not WINDOWS_REFUSES.search(stem)
    assert file_stem(stem) == stem


def test_every_eval_file_of_a_source_takes_the_safe_stem(tmp_path):
    run = RunFolder(tmp_path)
    suffixes = (".json", "_predictions.npz", "_label_efficiency.json", "_explore.json",
                "_explore.npz", "_clusters.csv", "_to_label.csv")
    for data in ("uea:BasicMotions", "ucr:GunPoint", "long:/data/x:y.csv"):
        for suffix in suffixes:
            path = run.evaluation(data, suffix)
            assert path.parent == tmp_path / "eval" and ":" not in path.name
    assert run.evaluation("uea:BasicMotions").name == "uea-BasicMotions.json"
    assert run.evaluation("/data/parts/", "_explore.npz").name == "parts_explore.npz"


def tiny_signal_run(path, signals, name="resnet1d"):
    mean, std = channel_stats(signals)
    torch.manual_seed(0)
    Backbone(BackboneConfig(name=name, in_chans=signals.channels, image_size=signals.length,
                            mean=mean, std=std, model_kwargs={"channels": (8, 8, 8)})).save(path)
    return path


def test_explore_of_a_bundled_set_writes_no_colon(tmp_path, capsys):
    run = tiny_signal_run(tmp_path / "run", load_signals("uea:BasicMotions", verbose=False))
    assert main(["explore", str(run), "uea:BasicMotions", "--max-clusters", "3", "--suggest",
                 "2", "--no-progress"]) == 0
    written = sorted(p.name for p in (run / "eval").iterdir())
    assert written == ["uea-BasicMotions_clusters.csv", "uea-BasicMotions_explore.json",
                       "uea-BasicMotions_explore.npz", "uea-BasicMotions_to_label.csv"]
    assert "uea-BasicMotions_explore.json" in capsys.readouterr().out
    assert main(["embed", str(run), "uea:BasicMotions", "--out", str(tmp_path / "E.npy")]) == 0
    assert "80 series embedded (8 dims)" in capsys.readouterr().out  # 40 train + 40 test


def test_a_signal_run_report_counts_series_and_steps():
    facts = dict(run_facts({"backbone": {"name": "resnet1d", "image_size": 100},
                            "num_images": 40},
                           [{"step": 5, "images_seen": 200, "elapsed": 6,
                             "images_per_sec": 33.0}]))
    assert facts["backbone"].endswith("@ 100 steps") and facts["training series"] == "40"
    assert facts["series seen"] == "200" and facts["throughput"] == "33 series/s"


def test_export_of_a_signal_run_reports_ms_per_series(tmp_path):
    signals = load_signals("uea:BasicMotions", verbose=False)
    run = tiny_signal_run(tmp_path / "run", signals)
    result = export_onnx(run, batch_sizes=(1, 2), latency_batches=(1, 4))
    lines = "\n".join(summary_lines(result))
    assert lines.count("ms/series") == 4 and "image" not in lines  # 2 batches x 2 runtimes
    image = ExportResult(backbone="resnet18", parity=result.parity,
                         latency_ms_per_image=result.latency_ms_per_image)
    assert "\n".join(summary_lines(image)).count("ms/image") == 4


@pytest.mark.parametrize(("backbone", "per", "rate"), [
    ("resnet1d", "ms/series", "series/s"), ("resnet18", "ms/image", "images/s")])
def test_evaluation_details_count_series_on_a_signal_run(backbone, per, rate):
    result = EvalResult(backbone=backbone, train_images=40, test_images=40,
                        compute=Compute(batch_size=8, inference_ms_per_image=0.5,
                                        train_images_per_sec=900.0))
    rows = dict(detail_rows(result, None))
    assert per in rows["compute"] and rate in rows["compute"]
    assert rows["series" if backbone == "resnet1d" else "images"] == "40 train / 40 test"
    assert np.isfinite(result.compute.inference_ms_per_image)
