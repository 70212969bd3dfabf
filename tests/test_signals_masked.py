"""Masked reconstruction on signals: TST's span masks, the loss against a slow reference on
each 1-D backbone, the method contract on a signal backbone, the refusal on images, and a short
real pretrain on BasicMotions that lowers the loss and gives embeddings a 1-NN classifier can
use."""

import json
import re
import sys

import numpy as np
import pytest
import torch

import selfsight
from conftest import moved_by_one_step
from selfsight.backbones import BackboneConfig, load_backbone
from selfsight.errors import UserError
from selfsight.methods import get_method
from selfsight.methods.masked_signal import span_mask
from selfsight.signals.data import load_signal_splits
from selfsight.signals.embed import signal_features
from selfsight.signals.views import SignalViewPipeline, signal_views

TINY = {"resnet1d": {"channels": (8, 16)}, "inceptiontime": {},
        "patchtst": {"dim": 16, "depth": 1, "heads": 2, "patch": 6, "stride": 3}}


pytestmark = pytest.mark.usefixtures("single_thread")  # one thread (conftest.one_thread)


def build(backbone: str, channels: int = 3, length: int = 50, **options):
    cls = get_method("masked")
    mean, std = tuple(float(i) for i in range(channels)), tuple(1.0 + i for i in range(channels))
    cfg = BackboneConfig(name=backbone, in_chans=channels, image_size=length, mean=mean, std=std,
                         model_kwargs=TINY[backbone])
    torch.manual_seed(0)
    model = cls(backbone=cfg, config=cls.Config(**options), batch_size=8)
    model.views = SignalViewPipeline(signal_views("masked"), mean, std)
    return model


def runs(row: np.ndarray) -> list[int]:
    """Lengths of the runs of True in ``row`` that touch neither end (not cut short)."""
    edges = np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))
    starts, ends = edges[::2], edges[1::2]
    return [e - s for s, e in zip(starts, ends) if s > 0 and e < len(row)]


def test_span_masks_hide_the_ratio_in_spans_of_the_mean_length():
    gen = torch.Generator().manual_seed(0)
    # Long rows: runs cut by an end are left out, and long runs are the likelier to be cut.
    mask = span_mask(100, 3000, 0.3, 8.0, gen).numpy()
    assert mask.shape == (100, 3000) and mask.dtype == bool
    assert mask.mean() == pytest.approx(0.3, abs=0.02)
    hidden = [n for row in mask for n in runs(row)]
    visible = [n for row in ~mask for n in runs(row)]
    assert np.mean(hidden) == pytest.approx(8.0, rel=0.08)
    assert np.mean(visible) == pytest.approx(8.0 * 0.7 / 0.3, rel=0.08)
    # Geometric lengths: a span of one step is the likeliest, with probability 1 / mean.
    assert np.mean(np.array(hidden) == 1) == pytest.approx(1 / 8, abs=0.02)
    again = span_mask(100, 3000, 0.3, 8.0, torch.Generator().manual_seed(0)).numpy()
    assert np.array_equal(mask, again)  # a pure function of the generator


@pytest.mark.parametrize("backbone", ["resnet1d", "patchtst"])
def test_loss_is_the_squared_error_on_hidden_steps_by_a_slow_reference(backbone):
    """Reference: the masked input built step by step, each PatchTST token's patch added to the
    steps it read and averaged by a loop, the error summed over hidden steps only."""
    model = build(backbone).eval()  # batch norm in eval mode: both passes alike
    x = torch.randn(4, 3, 50) * 2 + 1
    views = model.make_views(x)
    loss, logs = model.compute_loss(views)
    view = views[0].float().flatten(2)
    b, c, length = view.shape
    hidden = span_mask(b * c, length, model.config.mask_ratio, model.config.mean_span,
                       model.step_generator(stream=1)).view(b, c, length)
    mean, std = model.backbone.config.mean, model.backbone.config.std
    masked = view.clone()
    for i, j, t in zip(*np.nonzero(hidden.numpy())):
        masked[i, j, t] = mean[j]
    with torch.no_grad():
        tokens = model.backbone.features(masked, tokens=True)["tokens"][:, :, 0]  # (B, D, N)
        per_token = model.decoder(tokens).view(b, c, model.kernel, -1)
    total, count = torch.zeros(b, c, length), torch.zeros(length)
    for n in range(per_token.shape[-1]):
        for k in range(model.kernel):
            t = n * model.stride + k
            if t < length:
                total[:, :, t] += per_token[:, :, k, n]
                count[t] += 1
    pred = total / count
    error, hidden_count = 0.0, 0
    for i, j, t in zip(*np.nonzero(hidden.numpy())):
        target = (view[i, j, t] - mean[j]) / std[j]
        error += float(pred[i, j, t] - target) ** 2
        hidden_count += 1
    assert float(loss) == pytest.approx(error / hidden_count, rel=1e-4)
    assert logs["masked_fraction"] == pytest.approx(hidden_count / hidden.numel())
    assert (model.kernel, model.stride) == ((6, 3) if backbone == "patchtst" else (1, 1))


@pytest.mark.parametrize("backbone", sorted(TINY))
def test_method_contract_on_each_signal_backbone(backbone):
    """What tests/test_method_contract.py holds for image methods: cites its paper, a finite
    scalar loss, one optimizer step moves the backbone and the decoder."""
    model = build(backbone)
    first_line = sys.modules[type(model).__module__].__doc__.splitlines()[0]
    assert re.search(r"\(.+, (19|20)\d\d", first_line) and "(" in model.description
    loss, logs = model.compute_loss(model.make_views(torch.randn(8, 3, 50)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(isinstance(v, float) for v in logs.values())
    changed = moved_by_one_step(model, loss)
    assert any(n.startswith("backbone.") for n in changed) and "decoder.weight" in changed


def test_images_and_image_backbones_are_refused_in_one_line(fmnist_small):
    with pytest.raises(UserError, match="method 'masked' is for signals") as error:
        selfsight.pretrain(fmnist_small.subset(range(32)), "masked", "resnet18")
    assert "\n" not in str(error.value)
    cls = get_method("masked")
    image = BackboneConfig(name="resnet18", in_chans=1, image_size=16)
    with pytest.raises(UserError, match="image backbone"):
        cls(backbone=image)
    with pytest.raises(UserError, match="mask_ratio"):
        cls.Config(mask_ratio=0.0)
    with pytest.raises(UserError, match="mean_span"):
        cls.Config(mean_span=0.5)


def test_pretrain_on_basic_motions_lowers_the_loss_and_embeds_above_chance(tmp_path):
    """80 steps on the 40 training series (no labels), a narrow ResNet; then 1-NN on the test
    split with the training labels: 4 balanced classes, chance is 0.25."""
    run = selfsight.pretrain("uea:BasicMotions", "masked", out=tmp_path / "run", max_steps=80,
                             seed=0, precision="32-true", log_every=5, progress=False,
                             backbone_options={"channels": (16, 32, 32)})
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) >= 10
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses
    assert "method: masked" in (run / "config.yaml").read_text()
    backbone = load_backbone(run)
    train, test = load_signal_splits("uea:BasicMotions", verbose=False)
    bank, queries = signal_features(backbone, train.signals), signal_features(backbone,
                                                                              test.signals)
    predicted = train.labels[(queries @ bank.T).argmax(1).numpy()]
    assert (predicted == test.labels).mean() >= 0.6
