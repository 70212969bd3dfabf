"""Training: a killed run resumes to the same weights; checkpoints never run pickled code."""

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfsight.train.checkpoint_io import load_checkpoint

SCRIPT = """
import sys, numpy as np
import selfsight
from selfsight.data import from_arrays
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (256, 16, 16, 1), dtype=np.uint8)
selfsight.pretrain(from_arrays(images), "simclr", "resnet18", sys.argv[1], batch_size=32,
                   max_steps=24, checkpoint_every=2, precision="32-true", progress=False,
                   resume=len(sys.argv) > 2, backbone_options={"stem_stride": 2,
                   "channels": (8, 16, 32, 64)}, options={"proj_hidden_dim": 64})
"""


def run_script(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(out), *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = run_script(straight)
    victim = run_script(killed)
    ckpt = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline:  # wait for a mid-run checkpoint (8 steps per epoch)
        if ckpt.is_file() and 4 <= load_checkpoint(ckpt)["global_step"] < 20:
            break
        assert victim.poll() is None, victim.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    else:
        pytest.fail("no mid-run checkpoint appeared")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (killed / "backbone.safetensors").exists()
    killed_at = load_checkpoint(ckpt)["global_step"]
    assert killed_at < 24
    resumed = run_script(killed, "--resume")
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read().decode()[-2000:]
    assert reference.wait(timeout=240) == 0, reference.stderr.read().decode()[-2000:]
    assert load_checkpoint(ckpt)["global_step"] == 24
    a = load_file(straight / "backbone.safetensors")
    b = load_file(killed / "backbone.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path):
    from selfsight.train.fit import resume_step

    (tmp_path / "checkpoints").mkdir()
    torch.save({"global_step": 5}, tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(FileExistsError, match="--resume"):
        resume_step(tmp_path, resume=False)
    assert resume_step(tmp_path, resume=True)[0] == 5


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_loading_a_checkpoint_never_executes_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": {}, "x": Payload(str(marker))}, f)
    pickle.loads(evil.read_bytes())  # the payload is real: plain unpickling runs it
    assert marker.exists()
    marker.unlink()
    torch.save({"state_dict": {}, "x": Payload(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"evil\.ckpt"):
        load_checkpoint(evil)
    assert not marker.exists()
