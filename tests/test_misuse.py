"""One run, one folder; misuse gets one line up front: the run lock, the data fingerprint checked
on --resume, flags and options out of range, and `report` on a folder that is not a run."""

import json
import math
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from selfsight.cli import build_parser, main
from selfsight.errors import RunFolderTaken, UserError
from selfsight.run_folder import lock_owner, release_lock, take_lock

TINY = ["--image-size", "16", "--batch-size", "8", "--max-steps", "2", "--backbone-set",
        "stem_stride=2", "--backbone-set", "channels=(8,16,32,64)", "--set",
        "proj_hidden_dim=32", "--precision", "32-true", "--no-progress"]

HOLD = """
import sys, time
from selfsight.run_folder import RunFolder
with RunFolder(sys.argv[1]).lock():
    print("held", flush=True)
    time.sleep(120)
"""


def add_images(root, count, start=0):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"{i}.png")


def cli(argv, capsys):
    """(exit code, stderr) of the CLI; argparse's usage errors exit through SystemExit."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def one_error_line(err):
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- the run lock -----------------------------------------------------------------------------
def test_a_live_run_refuses_a_second_one_then_its_stale_lock_is_taken_over(tmp_path, capsys):
    data, run = tmp_path / "images", tmp_path / "run"
    add_images(data, 24)
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = cli(["pretrain", str(data), "--out", str(run), *TINY], capsys)
        assert code == 2
        line = one_error_line(err)
        assert str(run) in line and f"PID {holder.pid}" in line
        assert f"host {socket.gethostname()}" in line
        assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing of its own written
    finally:
        holder.kill()  # SIGKILL: no clean-up, the lock stays behind
        holder.wait()
    assert json.loads((run / ".lock").read_text())["pid"] == holder.pid
    code, err = cli(["pretrain", str(data), "--out", str(run), *TINY], capsys)
    assert code == 0, err
    assert "no longer running" in err and f"PID {holder.pid}" in err
    assert (run / "backbone.safetensors").is_file() and not (run / ".lock").exists()


def test_the_lock_spans_the_training_and_is_released_after(tmp_path, monkeypatch):
    import selfsight.api as api

    seen = []

    def fake_fit(model, images, cfg, run_dir, **kwargs):
        seen.append(json.loads((run_dir / ".lock").read_text()))

    monkeypatch.setattr(api, "fit_and_save", fake_fit)
    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 1), dtype=np.uint8)
    out = api.pretrain(images, "simclr", "resnet18", tmp_path / "run", batch_size=8,
                       max_steps=1, precision="32-true", progress=False,
                       backbone_options={"stem_stride": 2, "channels": (8, 16, 32, 64)},
                       options={"proj_hidden_dim": 32})
    assert seen and seen[0]["pid"] == os.getpid() and seen[0]["host"] == socket.gethostname()
    assert not (out / ".lock").exists()


def test_lock_holders(tmp_path):
    path = tmp_path / ".lock"
    mine = take_lock(path)
    with pytest.raises(RunFolderTaken, match=f"PID {os.getpid()} on host"):
        take_lock(path)  # held by a live process (this one)
    release_lock(path, mine)
    assert not path.exists()
    # Another host's lock cannot be checked: it is never taken over.
    path.write_text(json.dumps({**lock_owner(), "pid": dead_pid(), "host": "elsewhere"}))
    with pytest.raises(RunFolderTaken, match="on host elsewhere"):
        take_lock(path)
    # A dead PID on this host is stale; a reused PID (another start time) too.
    path.write_text(json.dumps({**lock_owner(), "pid": dead_pid()}))
    release_lock(path, take_lock(path))
    path.write_text(json.dumps({**lock_owner(), "pid_start": "1"}))
    release_lock(path, take_lock(path))
    # Someone else's lock is not removed by a release.
    other = take_lock(path)
    release_lock(path, lock_owner())
    assert path.exists()
    release_lock(path, other)
    # Unreadable: a fresh one is a run starting; an old one is named for deletion.
    path.write_text("")
    with pytest.raises(RunFolderTaken, match="starting"):
        take_lock(path)
    os.utime(path, (0, 0))
    with pytest.raises(RunFolderTaken, match="unreadable"):
        take_lock(path)


# --- the data fingerprint on --resume ---------------------------------------------------------
def test_resume_after_images_were_added_is_refused_unless_allowed(tmp_path, capsys):
    data, run = tmp_path / "images", tmp_path / "run"
    add_images(data, 24)
    assert cli(["pretrain", str(data), "--out", str(run), *TINY], capsys)[0] == 0
    before = yaml.safe_load((run / "config.yaml").read_text())
    assert before["data_fingerprint"]["images"] == 24 and before["data_fingerprint"][
        "files_sha256"]
    # Resuming on the same files is fine.
    assert cli(["pretrain", str(data), "--out", str(run), "--resume", *TINY], capsys)[0] == 0
    add_images(data, 6, start=24)
    config = (run / "config.yaml").read_text()
    code, err = cli(["pretrain", str(data), "--out", str(run), "--resume", *TINY], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "24 -> 30 files: 6 added" in line and "--allow-changed-data" in line
    assert (run / "config.yaml").read_text() == config  # untouched
    code, err = cli(["pretrain", str(data), "--out", str(run), "--resume",
                     "--allow-changed-data", *TINY], capsys)
    assert code == 0, err
    assert "6 added" in err and "continuing" in err
    assert yaml.safe_load((run / "config.yaml").read_text())["num_images"] == 30
    # Same count, other files: named as such.
    (data / "0.png").rename(data / "renamed.png")
    code, err = cli(["pretrain", str(data), "--out", str(run), "--resume", *TINY], capsys)
    assert code == 2 and "30 files as before, but not the same ones" in one_error_line(err)


# --- flags and options out of range: argparse's one usage line, or one UserError line ---------
NO_GPU = not torch.cuda.is_available()
MISUSE = [
    ["pretrain", "--batch-size", "0"],
    ["pretrain", "--epochs", "-1"],
    ["pretrain", "--epochs", "0"],
    ["pretrain", "--devices", "0"],
    ["pretrain", "--devices", "two"],
    ["pretrain", "--view-size", "0"],
    ["pretrain", "--image-size", "0"],
    ["pretrain", "--max-steps", "0"],
    ["pretrain", "--time-budget", "nan"],
    ["pretrain", "--time-budget", "-5"],
    ["pretrain", "--time-budget", "inf"],
    ["pretrain", "--seed", "-1"],
    ["pretrain", "--num-nodes", "0"],
    ["pretrain", "--knn-every", "-1"],
    ["pretrain", "--checkpoint-every", "-1"],
    ["pretrain", "--importance", "1"],
    ["pretrain", "--accelerator", "tpu2"],
    ["pretrain", "--set", "temperature=-1"],
    ["pretrain", "--set", "lr=0"],
    ["pretrain", "--set", "weight_decay=-0.1"],
    ["pretrain", "--set", "momentum=1"],
    ["pretrain", "--set", "proj_dim=0"],
    ["pretrain", "--method", "dino", "--set", "teacher_temp=0"],
    ["pretrain", "--method", "byol", "--set", "ema_momentum=1.5"],
    pytest.param(["pretrain", "--accelerator", "gpu"],
                 marks=pytest.mark.skipif(not NO_GPU, reason="a GPU is here")),
    ["distill", "RUN", "--batch-size", "0"],
    ["distill", "RUN", "--epochs", "0"],
    ["distill", "RUN", "--time-budget", "nan"],
    pytest.param(["distill", "RUN", "--accelerator", "gpu"],
                 marks=pytest.mark.skipif(not NO_GPU, reason="a GPU is here")),
    ["evaluate", "RUN", "--label-fractions", "0"],
    ["evaluate", "RUN", "--label-fractions", "0.1", "1.5"],
    ["evaluate", "RUN", "--seeds", "0"],
    ["evaluate", "RUN", "--validation-fraction", "1"],
    ["evaluate", "RUN", "--validation-folds", "0"],
    ["evaluate", "RUN", "--finetune-epochs", "0"],
    ["evaluate", "RUN", "--step-ladder", "1", "-2"],
    ["finetune", "RUN", "--fraction", "0"],
    ["finetune", "RUN", "--fraction", "1.5"],
    ["finetune", "RUN", "--lr", "nan"],
    ["explore", "RUN", "IMAGES", "--clusters", "1"],
    ["explore", "RUN", "IMAGES", "--max-clusters", "1"],
    ["explore", "RUN", "IMAGES", "--suggest", "-1"],
    ["drift", "RUN", "A", "B", "--permutations", "0"],
    ["anomaly", "score", "MODEL", "IMAGES", "--overlays", "-1"],
    ["embed", "RUN", "IMAGES", "--out", "x.npy", "--batch-size", "0"],
    ["segment", "RUN", "IMAGES", "--out", "m.json", "--masks", "0"],
]


@pytest.mark.parametrize("argv", MISUSE, ids=lambda argv: " ".join(argv))
def test_misuse_is_one_line_and_exit_2(argv, tmp_path, capsys):
    argv = [str(tmp_path / a) if a in ("RUN", "IMAGES", "MODEL", "A", "B") else a for a in argv]
    if argv[0] == "pretrain":
        argv += ["--out", str(tmp_path / "out")]  # data: fashion-mnist, never loaded
    code, err = cli(argv, capsys)
    assert code == 2
    line = one_error_line(err)
    flag = next(a for a in argv[1:] if a.startswith("--") and a not in ("--out", "--method"))
    value = argv[argv.index(flag) + 1] if flag != "--label-fractions" else argv[-1]
    assert flag in line or value.split("=")[0] in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("batch_size", 0), ("max_steps", 0), ("time_budget", math.nan),
    ("time_budget", -5.0), ("devices", 0), ("seed", -1), ("importance", 1.0),
    ("checkpoint_every", -1), ("knn_every", -1), ("num_nodes", 0),
])
def test_train_config_checks_reach_the_python_api(field, value):
    from selfsight.train.fit import TrainConfig

    with pytest.raises(UserError, match=field):
        TrainConfig(**{field: value})


def test_gpu_without_a_gpu_is_one_line_for_the_python_api():
    from selfsight.train.fit import TrainConfig

    if torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA GPU"):
            TrainConfig(accelerator="gpu", devices=torch.cuda.device_count() + 1)
    else:
        with pytest.raises(UserError, match="no CUDA GPU"):
            TrainConfig(accelerator="gpu")


def test_zero_means_off_where_it_does_and_help_says_so():
    def help_of(*verb):
        parser = build_parser()
        for name in verb:
            parser = parser._subparsers._group_actions[0].choices[name]
        return " ".join(parser.format_help().split())

    assert "(0, the default: off)" in help_of("pretrain")  # --knn-every
    assert "(0: only at each epoch end)" in help_of("pretrain")  # --checkpoint-every
    assert "top N images (0: none)" in help_of("anomaly", "score")  # --overlays
    assert "0, the default: off)" in help_of("evaluate")  # --distill-epochs
    args = build_parser().parse_args(["pretrain", "--knn-every", "0", "--checkpoint-every", "0",
                                      "--devices", "auto"])
    assert (args.knn_every, args.checkpoint_every, args.devices) == (0, 0, "auto")


# --- report only on a run folder --------------------------------------------------------------
def test_report_on_an_image_folder_refuses_and_writes_nothing(tmp_path, capsys):
    data = tmp_path / "images"
    add_images(data, 3)
    before = sorted(p.name for p in data.rglob("*"))
    code, err = cli(["report", str(data), "--no-progress"], capsys)
    assert code == 2 and "not a run folder" in one_error_line(err)
    assert sorted(p.name for p in data.rglob("*")) == before
