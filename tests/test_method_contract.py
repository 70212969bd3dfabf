"""The contract every registered method keeps (parametrized over ``list_methods()``)."""

import re
import sys

import pytest
import torch
from safetensors.torch import load_file

import selfsight
from conftest import moved_by_one_step
from selfsight.api import backbone_config
from selfsight.methods import get_method, list_methods

TINY_BACKBONE = {"stem_stride": 2, "channels": (8, 16, 32, 64)}
TINY_VIT = {"depth": 2, "embed_dim": 32, "num_heads": 2}
# DINO must work on both kinds of backbone; MAE needs a ViT. Signal-only methods keep the same
# contract on a signal backbone in tests/test_signals_masked.py.
IMAGE_METHODS = sorted(m for m in list_methods() if not get_method(m).signals_only)
CASES = [(m, "resnet18") for m in IMAGE_METHODS if not get_method(m).requires_vit]
CASES += [(m, "vit_tiny_patch16_224") for m in ("dino", "mae")]


def build(method: str, backbone: str, size: int = 16):
    options = TINY_VIT if backbone.startswith("vit") else TINY_BACKBONE
    cfg = backbone_config(backbone, 1, size, options)
    cls = get_method(method)
    torch.manual_seed(0)
    return cls(backbone=cfg, config=cls.default_config(cfg), views=cls.default_views(size),
               batch_size=16)


@pytest.fixture(scope="module")
def images(fmnist_small):
    return torch.from_numpy(fmnist_small.images[:16]).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("method,backbone", CASES)
def test_method_contract(method, backbone, images):
    model = build(method, backbone)
    assert model.name in list_methods() and "(" in model.description  # cites its paper
    first_line = sys.modules[type(model).__module__].__doc__.splitlines()[0]
    assert re.search(r"\(.+, (19|20)\d\d\)", first_line), first_line  # cites its paper
    loss, logs = model.compute_loss(model.make_views(images))
    assert loss.ndim == 0 and torch.isfinite(loss), loss
    assert all(isinstance(v, float) for v in logs.values())

    changed = moved_by_one_step(model, loss)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    with_grad = {n for n, p in model.named_parameters()
                 if p.grad is not None and p.grad.abs().sum() > 0}
    assert not changed & frozen, f"frozen parameters moved: {sorted(changed & frozen)[:5]}"
    assert with_grad <= changed, f"trainable parameters did not move: {with_grad - changed}"
    assert any(n.startswith("backbone.") for n in changed)

    pairs = model.ema_pairs()
    for online, target in pairs:
        assert all(p.grad is None and not p.requires_grad for p in target.parameters())
        gap_before = distance(online, target)
        reference = [p.detach().clone() for p in target.parameters()]
        own_statistics = [b.clone() for b in target.buffers()]
        model.on_train_batch_end(None, None, 0)  # the base's EMA update
        # Batch-norm statistics stay the target's own (from its forward passes), not copied.
        assert all(torch.equal(a, b) for a, b in zip(target.buffers(), own_statistics))
        gap_after = distance(online, target)
        assert gap_after < gap_before, (gap_before, gap_after)
        assert any(not torch.equal(a, b) for a, b in zip(target.parameters(), reference))
        # The target moved *towards* the online weights, by (1 - momentum) of the gap.
        assert gap_after == pytest.approx(model.ema_momentum * gap_before, rel=1e-3)


@torch.no_grad()
def distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return float(sum((p - q).pow(2).sum() for p, q in zip(a.parameters(), b.parameters())) ** 0.5)


@pytest.mark.parametrize("method,backbone", CASES)
def test_method_trains_one_batch_through_the_cli_path(method, backbone, fmnist_small, tmp_path):
    options = TINY_VIT if backbone.startswith("vit") else TINY_BACKBONE
    run = selfsight.pretrain(fmnist_small.subset(range(64)), method, backbone, tmp_path,
                             batch_size=32, max_steps=2, view_size=16, progress=False,
                             backbone_options=options)
    assert (run / "backbone.safetensors").is_file()
    assert selfsight.load_backbone(run)(torch.zeros(2, 1, 16, 16)).shape[0] == 2
    # The saved weights are the online backbone's (measured better than DINO's teacher here).
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    saved = load_file(str(run / "backbone.safetensors"))
    assert all(torch.equal(saved[k], state["backbone." + k]) for k in saved)


def test_mae_rejects_a_cnn_backbone_before_loading_data():
    with pytest.raises(ValueError, match="ViT"):
        selfsight.pretrain("/nonexistent/folder", "mae", "resnet18")


def test_simclr_shifted_rotations_make_rotated_copies_negatives(images):
    """CSI's shifted instances: the loss is NT-Xent over the batch and its 3 rotations, each a
    separate instance (so a rotated copy is a negative, never a positive)."""
    from dataclasses import replace

    from selfsight.losses import nt_xent

    model = build("simclr", "resnet18")
    model.config = replace(model.config, shifted_rotations=True)
    model.eval()  # batch norm in eval mode: the reference sees the same statistics
    views = model.make_views(images)
    loss, _ = model.compute_loss(views)
    rotated = [torch.cat([v.rot90(k, (2, 3)) for k in range(4)]) for v in views[:2]]
    z1, z2 = (model.projector(model.backbone(v)) for v in rotated)
    assert float(loss) == pytest.approx(float(nt_xent(z1, z2, model.config.temperature)),
                                        rel=1e-5)
    assert model.sample_losses.shape == (len(images),)


def test_dino_head_batch_norm_option(images):
    """lightly's ResNet recipe puts batch norm in DINO's head MLP; the option builds and trains."""
    from dataclasses import replace

    cls = get_method("dino")
    cfg = backbone_config("resnet18", 1, 16, TINY_BACKBONE)
    config = replace(cls.default_config(cfg), head_batch_norm=True)
    model = cls(backbone=cfg, config=config, views=cls.default_views(16), batch_size=16)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.head.mlp)
    loss, _ = model.compute_loss(model.make_views(images))
    loss.backward()
    assert torch.isfinite(loss) and model.head.mlp[1].weight.grad is not None


def test_dino_multicrop_sends_local_crops_through_the_student_only(images):
    """Small images default to two crops; with local crops (the large-image default) the teacher
    sees the two global views and the student those plus the locals."""
    from selfsight.views.presets import multicrop_views

    cls = get_method("dino")
    cfg = backbone_config("resnet18", 1, 16, TINY_BACKBONE)
    model = cls(backbone=cfg, config=cls.default_config(cfg), views=multicrop_views(16, 8, 3),
                batch_size=16)
    views = model.make_views(images)
    assert [v.shape[-1] for v in views] == [16, 16, 8, 8, 8]
    seen: dict[str, list] = {"teacher": [], "student": []}
    for name, net in (("teacher", model.teacher_backbone), ("student", model.backbone)):
        net.register_forward_hook(lambda m, i, o, name=name: seen[name].append(i[0].shape))
    loss, _ = model.compute_loss(views)
    n = len(images)
    assert [s[0] for s in seen["teacher"]] == [2 * n]
    assert [(s[0], s[-1]) for s in seen["student"]] == [(2 * n, 16), (3 * n, 8)]
    assert torch.isfinite(loss)


def test_rotnet_loss_is_cross_entropy_over_the_four_turns(images):
    """Reference: each image turned k quarter turns by hand (np.rot90) must be classified k."""
    import numpy as np

    model = build("rotnet", "resnet18").eval()
    views = model.make_views(images)
    loss, logs = model.compute_loss(views)
    view = views[0].float().numpy()
    total, correct = 0.0, 0
    for k in range(4):
        turned = torch.from_numpy(np.ascontiguousarray(np.rot90(view, k, axes=(2, 3))))
        logits = model.classifier(model.backbone(turned)).float()
        total += float(torch.nn.functional.cross_entropy(logits, torch.full((len(view),), k)))
        correct += int((logits.argmax(1) == k).sum())
    assert float(loss) == pytest.approx(total / 4, rel=1e-4)
    assert logs["rotation_accuracy"] == pytest.approx(correct / (4 * len(view)))
    assert model.sample_losses.shape == (len(images),)


def test_simclr_rotation_head_adds_a_weighted_rotation_loss(images):
    """CSI's rotation classification on SimCLR: loss = NT-Xent of the turned views + weight x
    cross entropy of the head's rotation prediction, both views of an image turned alike."""
    from dataclasses import replace

    from selfsight.losses import nt_xent
    from selfsight.views.ops import random_rotations

    model = build("simclr", "resnet18")
    cls = get_method("simclr")
    config = replace(model.config, rotation_weight=0.5)
    model = cls(backbone=model.backbone.config, config=config, views=cls.default_views(16),
                batch_size=16).eval()
    views = model.make_views(images)
    loss, logs = model.compute_loss(views)
    turned, k = random_rotations(views[:2], model.step_generator(stream=1))
    h1, h2 = (model.backbone(v) for v in turned)
    contrastive = nt_xent(model.projector(h1), model.projector(h2), config.temperature)
    rotation = torch.nn.functional.cross_entropy(model.rotation_head(torch.cat([h1, h2])),
                                                 k.repeat(2))
    assert logs["rotation_loss"] == pytest.approx(float(rotation), rel=1e-4)
    assert float(loss) == pytest.approx(float(contrastive + 0.5 * rotation), rel=1e-4)


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_every_view_a_method_derives_fits_a_vit_patch_grid(method, images):
    """At 80 px a ViT has 16-px patches while DINO's local crops (96/224 of the size) would be
    34 px and globallocal's 2x2 local patches 40 px: every view size is rounded onto the patch
    grid, and two training steps run."""
    depth = 5 if method == "hierarchical" else 1  # hierarchical reads blocks 1-4
    cfg = backbone_config("vit_tiny_patch16_224", 1, 80, {**TINY_VIT, "depth": depth})
    cls = get_method(method)
    torch.manual_seed(0)
    model = cls(backbone=cfg, config=cls.default_config(cfg), views=cls.default_views(80),
                batch_size=8)
    multiple = 16 * model.view_cells
    assert all(v.size % multiple == 0 for v in model.views.config.views)
    optimizer = model.configure_optimizers()
    for _ in range(2):
        loss, _ = model.compute_loss(model.make_views(images[:8]))
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_a_vit_image_size_off_its_patch_grid_is_one_line():
    with pytest.raises(ValueError, match="multiple of its patch size 16"):
        selfsight.Backbone(backbone_config("vit_tiny_patch16_224", 1, 100, TINY_VIT))


def test_dino_on_a_small_vit_leaves_the_uniform_start(fmnist_small, tmp_path):
    """A uniform teacher and student give loss ln(out_dim): DINO learns nothing there. On real
    images the small-image ViT recipe must leave it by a nat within 150 steps; the paper's
    teacher-temperature ramp to 0.07 with a teacher momentum going to 1 and no batch norm in
    the head stayed within a few tenths of it in short runs."""
    import json
    import math

    run = selfsight.pretrain(fmnist_small.subset(range(1024)), "dino", "vit_tiny_patch16_224",
                             tmp_path / "run", batch_size=64, max_steps=150, log_every=10,
                             progress=False, backbone_options={**TINY_VIT, "embed_dim": 64})
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    out_dim = get_method("dino").default_config(
        backbone_config("vit_tiny_patch16_224", 1, 28, None)).out_dim
    assert losses[-1] < math.log(out_dim) - 1, losses
