"""Every saved artifact (backbone, classifier, anomaly model, segmenter) goes through one format:
written atomically, and a broken one from elsewhere is one line that names the file, never a
traceback or executed code."""

import json
import re

import numpy as np
import pytest
import torch

from selfsight.anomaly.model import AnomalyConfig, AnomalyModel
from selfsight.artifacts import ANOMALY_MODEL, BACKBONE, CLASSIFIER, SEGMENTER, load_artifact
from selfsight.backbones import Backbone, backbone_config, load_backbone
from selfsight.classify import load_classifier, save_classifier
from selfsight.cli import main
from selfsight.errors import UserError
from selfsight.eval.finetune import Classifier
from selfsight.files import write_atomic
from selfsight.segment import SegmenterConfig
from selfsight.segment.model import build_segmenter
from selfsight.segment.segmenter import load_segmenter, save_segmenter

TINY = {"stem_stride": 2, "channels": (8, 16, 32, 64)}


def tiny_backbone() -> Backbone:
    torch.manual_seed(0)
    return Backbone(backbone_config("resnet18", 1, 28, TINY)).eval()


def saved(kind, folder):
    """Save a small artifact of ``kind`` into ``folder``; returns its loader."""
    backbone = tiny_backbone()
    if kind is BACKBONE:
        backbone.save(folder)
        return load_backbone
    if kind is CLASSIFIER:
        save_classifier(Classifier(backbone, 3), folder, {"classes": ["a", "b", "c"]})
        return load_classifier
    if kind is ANOMALY_MODEL:
        images = np.random.default_rng(0).integers(0, 256, (12, 28, 28, 1), dtype=np.uint8)
        AnomalyModel.fit(backbone, images, AnomalyConfig(coreset=1.0), device="cpu",
                         progress=False).save(folder)
        return AnomalyModel.load
    config = SegmenterConfig(image_size=28, steps=1)
    save_segmenter(build_segmenter(config, backbone), config, folder)
    return load_segmenter


KINDS = [BACKBONE, CLASSIFIER, ANOMALY_MODEL, SEGMENTER]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.what)
def test_saved_artifacts_load_and_every_kind_of_damage_is_one_named_error(kind, tmp_path):
    load = saved(kind, tmp_path / "a")
    load(tmp_path / "a")  # intact: loads
    meta, weights = tmp_path / "a" / kind.meta_file, tmp_path / "a" / kind.weights_file
    intact_meta, intact_weights = meta.read_text(), weights.read_bytes()
    damage = {
        "not JSON": lambda: meta.write_text("{truncated"),
        "a JSON list": lambda: meta.write_text("[1, 2]"),
        "truncated tensors": lambda: weights.write_bytes(intact_weights[:100]),
        "not safetensors": lambda: weights.write_bytes(b"\x80\x04pickle" * 10),
        "missing tensors": lambda: weights.unlink(),
    }
    for what, harm in damage.items():
        meta.write_text(intact_meta)
        weights.write_bytes(intact_weights)
        harm()
        with pytest.raises(UserError) as error:
            load(tmp_path / "a")
        named = kind.meta_file if what in ("not JSON", "a JSON list") else kind.weights_file
        assert named in str(error.value) and "\n" not in str(error.value), what


def test_a_saved_config_with_an_unknown_key_or_wrong_shape_is_refused(tmp_path):
    tiny_backbone().save(tmp_path)
    config = json.loads((tmp_path / BACKBONE.meta_file).read_text())
    (tmp_path / BACKBONE.meta_file).write_text(json.dumps({**config, "layers": 99}))
    with pytest.raises(UserError, match=r"backbone\.json.*unknown option.*layers"):
        load_backbone(tmp_path)
    wider = {**config, "model_kwargs": {"channels": [16, 32, 64, 128]}}
    (tmp_path / BACKBONE.meta_file).write_text(json.dumps(wider))
    with pytest.raises(UserError, match=r"backbone\.safetensors: the weights do not fit"):
        load_backbone(tmp_path)


def test_the_cli_reports_a_broken_artifact_in_one_line(tmp_path, capsys):
    tiny_backbone().save(tmp_path / "run")
    (tmp_path / "run" / BACKBONE.weights_file).write_bytes(b"garbage")
    assert main(["embed", str(tmp_path / "run"), str(tmp_path), "--out",
                 str(tmp_path / "e.npy"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    (line,) = [s for s in err.splitlines() if "error" in s]
    assert line.startswith("selfsight: error: ") and "backbone.safetensors" in line
    assert "Traceback" not in err


def test_a_bug_is_not_dressed_up_as_a_user_error(tmp_path, monkeypatch):
    """Only UserError becomes one line: anything else keeps its traceback."""
    from selfsight import cli

    def broken(args):
        raise TypeError("a bug in selfsight")

    verbs = [v if v.name != "predict" else cli.Verb(v.name, v.help, v.arguments, broken)
             for v in cli.VERBS]
    monkeypatch.setattr(cli, "VERBS", tuple(verbs))
    with pytest.raises(TypeError, match="a bug"):
        main(["predict", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "p.csv")])


def test_a_write_that_fails_midway_leaves_the_previous_file(tmp_path):
    target = tmp_path / "backbone.json"
    target.write_text('{"good": true}')

    def half_then_fail(f):
        f.write(b'{"half')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(target, half_then_fail)
    assert json.loads(target.read_text()) == {"good": True}
    assert [p.name for p in tmp_path.iterdir()] == ["backbone.json"]  # no temporary left


def test_load_artifact_never_unpickles(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code ran')",))

    tmp_path.joinpath(SEGMENTER.meta_file).write_text("{}")
    torch.save({"w": Boom()}, tmp_path / SEGMENTER.weights_file)
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_artifact(tmp_path, SEGMENTER)


@pytest.mark.parametrize("tamper, says", [
    ({"model_kwargs": {"pretrained": True}}, "'pretrained' is not allowed"),
    ({"model_kwargs": {"checkpoint_path": "/etc/passwd"}}, "'checkpoint_path' is not allowed"),
    ({"model_kwargs": {"channels": [8, 16, 32, 10**9]}}, "sizes must lie in"),
    ({"name": 18}, "name must be text"),
])
def test_a_backbone_json_cannot_open_files_fetch_weights_or_ask_for_terabytes(tmp_path, tamper,
                                                                              says):
    tiny_backbone().save(tmp_path)
    config = json.loads((tmp_path / BACKBONE.meta_file).read_text())
    (tmp_path / BACKBONE.meta_file).write_text(json.dumps({**config, **tamper}))
    with pytest.raises(UserError, match=r"backbone\.json.*" + re.escape(says)):
        load_backbone(tmp_path)


def test_a_tampered_anomaly_model_is_refused_before_scoring(tmp_path):
    saved(ANOMALY_MODEL, tmp_path)
    meta = json.loads((tmp_path / ANOMALY_MODEL.meta_file).read_text())
    for calibration, says in (({"threshold": float("nan")}, "finite"),
                              ({"patch_std": 0.0}, "positive spreads")):
        broken = {**meta, "calibration": {**meta["calibration"], **calibration}}
        (tmp_path / ANOMALY_MODEL.meta_file).write_text(json.dumps(broken))
        with pytest.raises(UserError, match=r"anomaly\.json: calibration.*" + says):
            AnomalyModel.load(tmp_path)
    (tmp_path / ANOMALY_MODEL.meta_file).write_text(json.dumps({"calibration": {}}))
    with pytest.raises(UserError, match=r"anomaly\.json: expected the AnomalyConfig"):
        AnomalyModel.load(tmp_path)
