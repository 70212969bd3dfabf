"""``export`` and ``drift`` on signal runs: the ONNX graph takes raw float32 signals (B, C, L)
and matches PyTorch on real BasicMotions series for each 1-D backbone; drift tells a shifted
copy of the data from an unshifted split."""

import json

import numpy as np
import pytest
import torch

from conftest import assert_reads_back
from selfsight.backbones import Backbone, BackboneConfig, load_backbone
from selfsight.cli import main
from selfsight.errors import UserError
from selfsight.export import export_onnx
from selfsight.files import write_text
from selfsight.results import DriftResult, ExportResult
from selfsight.signals.data import channel_stats, load_signal_splits

ort = pytest.importorskip("onnxruntime")

TINY = {"resnet1d": {"channels": (16, 32, 32)}, "inceptiontime": {},
        "patchtst": {"dim": 32, "depth": 2, "heads": 2}}


pytestmark = pytest.mark.usefixtures("single_thread")  # one thread (conftest.one_thread)


@pytest.fixture(scope="module")
def basic_motions():
    return load_signal_splits("uea:BasicMotions", verbose=False)


def make_run(path, name, train):
    """A saved signal backbone with the training split's statistics, non-trivial batch-norm
    statistics (as after training) and a config.yaml naming its data, as pretrain writes."""
    mean, std = channel_stats(train)
    cfg = BackboneConfig(name=name, in_chans=train.channels, image_size=train.length, mean=mean,
                         std=std, model_kwargs=TINY[name])
    torch.manual_seed(0)
    backbone = Backbone(cfg).eval()
    with torch.no_grad():
        for m in backbone.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    backbone.save(path)
    write_text(path / "config.yaml", "data: uea:BasicMotions\n")
    return path


@pytest.mark.parametrize("name", sorted(TINY))
def test_onnx_takes_raw_signals_and_matches_pytorch(tmp_path, basic_motions, name):
    train, test = basic_motions
    run = make_run(tmp_path / "run", name, train)
    result = export_onnx(run, batch_sizes=(1, 5), latency=False)
    assert result["parity"]["passed"] and result["parity"]["max"] < 1e-4
    assert "the run's training series" in result["parity"]["inputs"]
    assert result["input"]["name"] == "signals" and result["input"]["layout"] == "NCL"
    assert result["input"]["shape"] == ["batch", 6, 100]
    assert_reads_back(ExportResult, run / "export" / "export.json")
    # Independent check: a fresh session, test series the export never saw, batch sizes it
    # never traced, against the backbone as `embed` runs it.
    backbone = load_backbone(run).eval()
    session = ort.InferenceSession(str(run / "export" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    for batch in (3, 9):
        series = test.signals[:batch]
        got = session.run(None, {"signals": series})[0]
        with torch.no_grad():
            expected = backbone(torch.from_numpy(series)).numpy()
        assert got.shape == (batch, backbone.dim)
        assert np.abs(got - expected).max() < 1e-4


def test_export_through_the_cli_with_given_signals(tmp_path, basic_motions, capsys):
    train, test = basic_motions
    run = make_run(tmp_path / "run", "resnet1d", train)
    np.save(tmp_path / "test.npy", test.signals)
    assert main(["export", str(run), "--images", str(tmp_path / "test.npy"),
                 "--no-latency"]) == 0
    assert "parity: max |onnx - torch|" in capsys.readouterr().out
    spec = json.loads((run / "export" / "export.json").read_text())
    assert spec["parity"]["inputs"] == f"32 of {tmp_path / 'test.npy'}"
    np.save(tmp_path / "three.npy", test.signals[:, :3])
    with pytest.raises(UserError, match="3 channels, but the backbone was trained on 6"):
        export_onnx(run, images=tmp_path / "three.npy", latency=False)


def test_drift_tells_a_shifted_copy_from_an_unshifted_split(tmp_path, basic_motions, capsys):
    """Reference: the training split. The test split (same distribution) must not drift; the
    test split with every channel moved by one training standard deviation must."""
    train, test = basic_motions
    run = make_run(tmp_path / "run", "resnet1d", train)
    std = np.asarray(channel_stats(train)[1], np.float32).reshape(1, -1, 1)
    np.save(tmp_path / "same.npy", test.signals)
    np.save(tmp_path / "shifted.npy", test.signals + std)
    results = {}
    for current in ("same", "shifted"):
        assert main(["drift", str(run), "uea:BasicMotions", str(tmp_path / f"{current}.npy"),
                     "--permutations", "200", "--device", "cpu"]) == 0
        results[current] = DriftResult.load(run / "eval" / "drift.json")
        assert_reads_back(DriftResult, run / "eval" / "drift.json")
    same, shifted = results["same"], results["shifted"]
    assert same.reference_items == 40 and same.current_items == 40
    assert same.p_value > 0.05 and same.mmd2 < same.null_mmd2_95
    assert shifted.p_value < 0.01 and shifted.mmd2 > 3 * shifted.null_mmd2_95
    assert ": drift" in capsys.readouterr().out


def test_drift_refuses_signals_of_other_channels_in_one_line(tmp_path, basic_motions):
    from selfsight.api import drift

    train, test = basic_motions
    run = make_run(tmp_path / "run", "resnet1d", train)
    np.save(tmp_path / "one.npy", test.signals[:, :1])
    with pytest.raises(UserError, match="1 channel, but the backbone was trained on 6"):
        drift(run, "uea:BasicMotions", tmp_path / "one.npy", device="cpu")
