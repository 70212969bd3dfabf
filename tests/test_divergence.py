"""A run that diverges keeps its last good checkpoint, says where to continue from in one line,
and continues with a lower learning rate; nothing downstream uses non-finite weights."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from selfsight.cli import main
from selfsight.errors import UserError
from selfsight.train.checkpoint_io import load_checkpoint

BATCH = 16  # 64 images: 4 steps per epoch
TINY = ["--image-size", "16", "--batch-size", str(BATCH), "--backbone", "resnet18",
        "--backbone-set", "stem_stride=2", "--backbone-set", "channels=(8,16,32,64)",
        "--set", "proj_hidden_dim=32", "--precision", "32-true", "--no-progress",
        "--accelerator", "cpu"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A labelled folder of 64 + 64 noisy 16-px images in two classes (train/ and test/)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, level in (("dark", 60), ("bright", 190)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(32):
                pixels = np.clip(rng.normal(level, 40, (16, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def pretrain(images, run, *options: str) -> int:
    return main(["pretrain", str(images / "train"), "--out", str(run), *TINY, *options])


def error_line(capsys) -> str:
    """The one line the CLI printed for a user error (and that nothing else came with it)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("selfsight: error: "), err
    return line


def all_finite(tensors: dict) -> bool:
    return all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def logged(run, key: str) -> list[tuple[int, float]]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    return [(line["step"], line[key]) for line in lines if key in line]


def test_a_diverged_run_keeps_its_last_good_checkpoint_and_resumes_with_a_lower_lr(
        images, tmp_path, capsys):
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "last.ckpt"
    assert pretrain(images, run, "--max-steps", "12", "--checkpoint-every", "2",
                    "--set", "lr=1e9") == 2
    line = error_line(capsys)
    good = load_checkpoint(ckpt)
    assert all_finite(good["state_dict"])
    found = re.search(r"training diverged \(.*non-finite .* at step (\d+)\); (.+) keeps the "
                      r"last good state \(step (\d+)\): the same command with --resume and a "
                      r"lower --set lr", line)
    assert found, line
    assert found[2] == str(ckpt) and int(found[3]) == good["global_step"] < int(found[1])
    assert not (run / "backbone.safetensors").exists()

    assert pretrain(images, run, "--max-steps", "12", "--checkpoint-every", "2",
                    "--set", "lr=0.01", "--resume") == 0
    final = load_checkpoint(ckpt)
    assert final["global_step"] == 12 and all_finite(final["state_dict"])
    assert all_finite(load_file(run / "backbone.safetensors"))
    # The lower learning rate is the one in use, not the diverged run's restored with the
    # optimizer: per 256 images, scaled to the batch.
    base_lr = 0.01 * BATCH / 256
    assert {group["base_lr"] for group in final["optimizer_states"][0]["param_groups"]} \
        == {base_lr}
    resumed = [lr for step, lr in logged(run, "lr") if step > good["global_step"]]
    assert resumed and all(0 <= lr <= base_lr for lr in resumed)


def poison_from(monkeypatch, step: int, how: str) -> None:
    """From ``step`` on, the loss is NaN (``how="loss"``), or a batch-norm running variance
    is (``how="weights"``, the loss staying finite)."""
    from selfsight.methods.simclr import SimCLR

    compute_loss = SimCLR.compute_loss

    def poisoned(self, views):
        loss, logs = compute_loss(self, views)
        if self.global_step < step:
            return loss, logs
        if how == "loss":
            return loss * float("nan"), logs
        bn = self.backbone.model.bn1  # a new tensor: the old one is saved for the backward
        bn.running_var = torch.full_like(bn.running_var, float("nan"))
        return loss, logs

    monkeypatch.setattr(SimCLR, "compute_loss", poisoned)


@pytest.mark.parametrize(("how", "said"), [
    ("loss", "simclr: non-finite loss nan at step 5"),
    # Found only by the final write: the epoch-end checkpoint (step 4) stays.
    ("weights", "non-finite weights in backbone.model.bn1.running_var at step 6"),
])
def test_divergence_found_by_the_loss_or_the_final_write_is_one_line(
        images, tmp_path, capsys, monkeypatch, how, said):
    run = tmp_path / "run"
    poison_from(monkeypatch, 5, how)
    assert pretrain(images, run, "--max-steps", "6", "--checkpoint-every", "0") == 2
    assert error_line(capsys) == (
        f"selfsight: error: training diverged ({said}); {run / 'checkpoints' / 'last.ckpt'} "
        "keeps the last good state (step 4): the same command with --resume and a lower --set "
        "lr (or a longer --set warmup) continues from it")
    good = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert good["global_step"] == 4 and all_finite(good["state_dict"])
    assert not (run / "backbone.safetensors").exists()


def test_divergence_before_any_checkpoint_says_to_start_again(images, tmp_path, capsys,
                                                               monkeypatch):
    poison_from(monkeypatch, 1, "loss")
    assert pretrain(images, tmp_path / "run", "--max-steps", "3") == 2
    assert error_line(capsys).endswith(
        "(simclr: non-finite loss nan at step 1) before any checkpoint was written; start it "
        "again with a lower --set lr (or a longer --set warmup)")
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_resume_refuses_a_change_that_makes_the_weights_meaningless(images, tmp_path, capsys):
    run = tmp_path / "run"
    assert pretrain(images, run, "--max-steps", "2") == 0
    capsys.readouterr()
    assert pretrain(images, run, "--max-steps", "4", "--resume", "--set",
                    "proj_hidden_dim=48", "--set", "lr=0.1") == 2
    # The learning rate may change; only the projector's width is named.
    assert "--resume with a different method option proj_hidden_dim (32, now 48) than the run " \
        "was started with" in error_line(capsys)
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 2


def test_resume_may_change_optimisation_settings_only():
    from selfsight.train.run_start import recipe_changes

    before = {"method": "simclr", "backbone": {"name": "resnet18"}, "views": {"size": 16},
              "config": {"optimizer": "lars", "lr": 1.0, "warmup": 0.05, "weight_decay": 1e-6,
                         "ema_momentum": 0.99, "temperature": 0.2, "proj_dim": 128},
              "train": {"max_steps": 10}}
    optimisation = {**before, "train": {"max_steps": 20},
                    "config": {**before["config"], "lr": 0.1, "warmup": 0.2,
                               "weight_decay": 1e-5, "ema_momentum": 0.996}}
    assert recipe_changes(before, optimisation) == []
    meaning = {**before, "backbone": {"name": "resnet50"},
               "config": {**before["config"], "optimizer": "sgd", "temperature": 0.1,
                          "proj_dim": 64}}
    assert recipe_changes(before, meaning) == [
        "method option optimizer ('lars', now 'sgd')", "method option proj_dim (128, now 64)",
        "method option temperature (0.2, now 0.1)", "backbone"]


def tiny_backbone():
    from selfsight.backbones import Backbone, BackboneConfig

    return Backbone(BackboneConfig(image_size=16, model_kwargs={"channels": (8, 16, 32, 64)}))


@pytest.fixture
def nan_backbone(tmp_path):
    """A backbone folder whose safetensors hold a NaN in one tensor."""
    backbone = tiny_backbone()
    with torch.no_grad():
        backbone.model.layer1[0].bn1.running_var[3] = float("nan")
    backbone.save(tmp_path / "run")
    return tmp_path / "run"


def test_a_backbone_with_nan_weights_is_refused_by_name(nan_backbone, images, tmp_path, capsys):
    from selfsight.backbones import load_backbone

    weights = nan_backbone / "backbone.safetensors"
    with pytest.raises(UserError, match=re.escape(
            f"{weights}: holds non-finite weights (NaN/inf) in model.layer1.0.bn1.running_var")):
        load_backbone(nan_backbone)
    assert main(["embed", str(nan_backbone), str(images / "test"), "--out",
                 str(tmp_path / "features.npy"), "--no-progress"]) == 2
    assert str(weights) in error_line(capsys)
    assert not (tmp_path / "features.npy").exists()
    assert main(["evaluate", str(nan_backbone), "--data", str(images), "--quick",
                 "--no-progress"]) == 2
    assert str(weights) in error_line(capsys)


def test_features_that_overflow_are_refused():
    from selfsight.eval.extract import extract_features

    backbone = tiny_backbone()
    with torch.no_grad():  # finite, but the first layer's outputs overflow float32
        backbone.model.conv1.weight.fill_(1e38)
    images = np.full((6, 16, 16, 3), 200, np.uint8)
    with pytest.raises(UserError, match=r"resnet18 backbone gives non-finite features "
                                        r"\(NaN/inf\) for images 0 to 3 at \S+ precision"):
        extract_features(backbone, images, batch_size=4, progress=False, device="cpu")


def test_a_checkpoint_that_already_holds_nan_is_not_continued(images, tmp_path, capsys):
    """One written before checkpoints were checked: resuming it would diverge at once."""
    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "last.ckpt"
    assert pretrain(images, run, "--max-steps", "2") == 0
    poisoned = load_checkpoint(ckpt)
    poisoned["state_dict"]["backbone.model.bn1.running_var"][0] = float("nan")
    torch.save(poisoned, ckpt)
    capsys.readouterr()
    assert pretrain(images, run, "--max-steps", "4", "--resume", "--set", "lr=0.1") == 2
    assert error_line(capsys) == (
        f"selfsight: error: {ckpt}: holds non-finite weights (NaN/inf) in "
        "backbone.model.bn1.running_var, from a run that diverged, and cannot be continued; "
        "start again in a new --out with a lower --set lr (or a longer --set warmup)")
