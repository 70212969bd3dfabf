"""Fault injection: a bad day for a run, case by case, through the command line a user runs.

Each case starts real ``selfsight`` processes on a small real folder (scikit-learn's digits as
PNGs, see small_folder.py), injects one fault (kill -9 at random points, SIGTERM, a diverging
learning rate, a second writer, a full disk at the checkpoint write, tampered artifacts, a
non-UTF-8 file name, misuse), and checks what a user is left with: the exit code, one line that
says what happened (no traceback), and whether anything was lost (the last good state intact and
resumable, nothing stale left behind). Prints a table and writes benchmarks/results/faults.json.

    python benchmarks/faults.py            # about 3 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from small_folder import write_digits

OUT = Path("benchmarks/results/faults.json")
EXE = [sys.executable, "-m", "selfsight.cli"]
FAST = ["--backbone", "resnet10_cpu", "--batch-size", "64", "--precision", "32-true",
        "--checkpoint-every", "5", "--no-progress"]


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, **kw)


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([*EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def last_step(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    if not metrics.is_file():
        return 0
    lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    return max((r.get("step", 0) for r in lines), default=0)


def wait_for_step(run_dir: Path, step: int, process: subprocess.Popen, limit: float = 120):
    started = time.monotonic()
    while last_step(run_dir) < step and process.poll() is None:
        if time.monotonic() - started > limit:
            break
        time.sleep(0.2)


def one_line_error(stderr: str) -> bool:
    """The user sees 'selfsight: ...' and no traceback."""
    return "Traceback" not in stderr and any(line.startswith("selfsight:")
                                             for line in stderr.splitlines())


def finite_backbone(run_dir: Path) -> bool:
    from safetensors.numpy import load_file

    path = run_dir / "backbone.safetensors"
    return path.is_file() and all(np.isfinite(v).all() for v in load_file(str(path)).values()
                                  if v.dtype.kind == "f")


def stale_temporaries(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob(".*.tmp")]


def pretrain_args(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["pretrain", str(data / "train"), "--out", str(out), "--max-steps", str(steps),
            *FAST, *extra]


# --- the cases: each returns (outcome, exit code, data lost) ---------------------------------

def kills_at_random_points(data: Path, work: Path) -> tuple[str, int, str]:
    out, rng, kills = work / "kill9", random.Random(0), 0
    for _ in range(4):  # kill -9 at random moments (also mid-checkpoint), resume each time
        process = start(pretrain_args(data, out, 60, *(["--resume"] if kills else [])))
        time.sleep(rng.uniform(2.0, 9.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
    final = run(pretrain_args(data, out, 60, "--resume"))
    ok = final.returncode == 0 and last_step(out) >= 60 and finite_backbone(out)
    return (f"{kills} kills, resumed to step {last_step(out)}", final.returncode,
            "none" if ok and not stale_temporaries(out) else "run lost or stale files left")


def sigterm(data: Path, work: Path) -> tuple[str, int, str]:
    out = work / "sigterm"
    process = start(pretrain_args(data, out, 200))
    wait_for_step(out, 10, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate()
    saved = finite_backbone(out) and (out / "checkpoints" / "last.ckpt").is_file()
    resumed = run(pretrain_args(data, out, 30, "--resume"))
    lost = "none" if saved and resumed.returncode == 0 else "nothing saved or not resumable"
    said = err.strip().splitlines()[-1] if err.strip() else ""
    return f"exit {process.returncode}: {said[:80]}", process.returncode, lost


def divergence(data: Path, work: Path) -> tuple[str, int, str]:
    out = work / "nan"
    good = run(pretrain_args(data, out, 10))
    bad = run(pretrain_args(data, out, 30, "--resume", "--set", "lr=1e12"))
    said = bad.stderr.strip().splitlines()[-1] if bad.stderr.strip() else ""
    again = run(pretrain_args(data, out, 30, "--resume", "--set", "lr=0.5"))
    ok = good.returncode == 0 and bad.returncode != 0 and one_line_error(bad.stderr) \
        and again.returncode == 0 and finite_backbone(out)
    return f"{said[:90]}", bad.returncode, "none" if ok else "diverged state kept or lost"


def two_writers(data: Path, work: Path) -> tuple[str, int, str]:
    out = work / "two"
    first = start(pretrain_args(data, out, 40))
    wait_for_step(out, 2, first)
    second = run(pretrain_args(data, out, 40))
    first.communicate()
    ok = second.returncode != 0 and one_line_error(second.stderr) and first.returncode == 0
    said = second.stderr.strip().splitlines()[-1] if second.stderr.strip() else ""
    return said[:90], second.returncode, "none" if ok and finite_backbone(out) else "mixed"


def full_disk_at_checkpoint(data: Path, work: Path) -> tuple[str, int, str]:
    """ENOSPC injected into the third atomic write of the run (a checkpoint)."""
    out = work / "enospc"
    inject = ("import errno, sys, selfsight.files as f\n"
              "real, calls = f.write_atomic, [0]\n"
              "def full(path, write):\n"
              "    calls[0] += 1\n"
              "    if str(path).endswith('last.ckpt') and calls[0] > 2:\n"
              "        def failing(handle):\n"
              "            handle.write(b'partial')\n"
              "            raise OSError(errno.ENOSPC, 'No space left on device')\n"
              "        return real(path, failing)\n"
              "    return real(path, write)\n"
              "f.write_atomic = full\n"
              "from selfsight.cli import main\n"
              f"sys.exit(main({pretrain_args(data, out, 20)!r}))\n")
    result = subprocess.run([sys.executable, "-c", inject], capture_output=True, text=True)
    said = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    resumed = run(pretrain_args(data, out, 20, "--resume"))
    ok = result.returncode != 0 and one_line_error(result.stderr) and \
        not stale_temporaries(out) and resumed.returncode == 0
    return said[:90], result.returncode, "none" if ok else "checkpoint lost or .tmp left"


def full_disk_at_the_cache(data: Path, work: Path) -> tuple[str, int, str]:
    """The images on a real 12 MB tmpfs (7 MB of PNGs), too small for their decoded cache
    at 128 px (about 24 MB; needs root to mount)."""
    disk = work / "tmpfs"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        return "skipped: cannot mount a tmpfs here", 0, "not measured"
    try:
        shutil.copytree(data / "train", disk / "train")
        result = run(["pretrain", str(disk / "train"), "--out", str(work / "cache_run"),
                      "--max-steps", "2", "--image-size", "128", *FAST])
        said = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
        ok = result.returncode == 2 and one_line_error(result.stderr) and \
            not stale_temporaries(disk)
        return said[:90], result.returncode, "none" if ok else "crash or .tmp left"
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def tampered_artifacts(data: Path, work: Path) -> tuple[str, int, str]:
    base = work / "clean"
    run(pretrain_args(data, base, 5))
    harms: dict[str, Callable[[Path], None]] = {
        "truncated weights": lambda r: (r / "backbone.safetensors").write_bytes(
            (r / "backbone.safetensors").read_bytes()[:200]),
        "empty weights": lambda r: (r / "backbone.safetensors").write_bytes(b""),
        "pretrained=true": lambda r: (r / "backbone.json").write_text(json.dumps(
            {**json.loads((r / "backbone.json").read_text()),
             "model_kwargs": {"pretrained": True}})),
        "36 TB of channels": lambda r: (r / "backbone.json").write_text(json.dumps(
            {**json.loads((r / "backbone.json").read_text()),
             "model_kwargs": {"channels": [10**9] * 4}})),
        "not JSON": lambda r: (r / "backbone.json").write_text("{"),
    }
    failed = []
    for name, harm in harms.items():
        tampered = work / f"tampered-{len(failed)}-{name.split()[0]}"
        shutil.copytree(base, tampered)
        harm(tampered)
        result = run(["embed", str(tampered), str(data / "test"), "--out",
                      str(work / "e.npy"), "--no-progress"])
        if result.returncode != 2 or not one_line_error(result.stderr):
            failed.append(name)
    outcome = f"{len(harms) - len(failed)} of {len(harms)} refused in one line"
    return outcome, 2 if not failed else 1, "none" if not failed else ", ".join(failed)


def odd_file_name(data: Path, work: Path) -> tuple[str, int, str]:
    folder = work / "odd"
    shutil.copytree(data / "test" / "3", folder)
    name = os.fsdecode(b"caf\xe9.png")
    shutil.copy(next(folder.glob("*.png")), folder / name)
    result = run(["embed", str(work / "clean"), str(folder), "--out", str(work / "odd.npy"),
                  "--no-progress"])
    listed = (work / "odd.npy.json").is_file() and "caf" in (work / "odd.npy.json").read_text()
    return ("embedded, name kept" if listed else "name lost", result.returncode,
            "none" if result.returncode == 0 and listed else "batch aborted")


def misuse(data: Path, work: Path) -> tuple[str, int, str]:
    flags = [["--batch-size", "0"], ["--epochs", "-1"], ["--time-budget", "nan"],
             ["--max-steps", "0"], ["--set", "temperature=-1"]]
    bad = []
    for extra in flags:
        result = run(["pretrain", str(data / "train"), "--out", str(work / "misuse"),
                      "--no-progress", *extra])
        if result.returncode != 2 or "Traceback" in result.stderr:
            bad.append(" ".join(extra))
    return (f"{len(flags) - len(bad)} of {len(flags)} refused up front", 2 if not bad else 1,
            "none" if not bad else ", ".join(bad))


CASES = {"kill -9 at random points, resumed": kills_at_random_points, "SIGTERM": sigterm,
         "diverging learning rate": divergence, "two writers, one folder": two_writers,
         "full disk at a checkpoint": full_disk_at_checkpoint,
         "full disk at the decode cache": full_disk_at_the_cache,
         "tampered artifacts": tampered_artifacts, "non-UTF-8 file name": odd_file_name,
         "misuse": misuse}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="benchmarks/results/faults_work")
    p.add_argument("--only", nargs="*", default=None, help="case names (substrings)")
    args = p.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    data = write_digits(work / "digits")
    rows = []
    for name, case in CASES.items():
        if args.only and not any(o in name for o in args.only):
            continue
        started = time.monotonic()
        outcome, code, lost = case(data, work)
        rows.append({"case": name, "outcome": outcome, "exit_code": code, "data_lost": lost,
                     "seconds": round(time.monotonic() - started, 1)})
        print(f"{name:<34} exit {code:>3}  lost: {lost:<8} {outcome}", flush=True)
    summary = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"),
               "cases": len(rows), "nothing_lost": sum(r["data_lost"] == "none" for r in rows),
               "rows": rows}
    OUT.write_text(json.dumps(summary, indent=2))
    print(f"{summary['nothing_lost']} of {len(rows)} cases lost nothing; written to {OUT}")


if __name__ == "__main__":
    main()
