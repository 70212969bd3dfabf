"""DINO (Caron et al., 2021) or MAE (He et al., 2022) on a small ViT: does it learn in a CPU
budget?

Runs the same ``selfsight pretrain`` command twice, with a short and a long ``--time-budget``,
then measures both backbones with the repo's kNN (``selfsight.evaluate``: 60,000-image bank,
10,000 test images, k = 200 and 20, T = 0.1). Prints and writes ``summary.json``: the loss curve
and final loss (for DINO against ln(out_dim), the loss of a uniform teacher and student), kNN of
both runs and the gain, with the machine's facts (threads, CPU flags, precision).

    python benchmarks/vit_acceptance.py --method dino --budgets 5 480
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

import selfsight
from selfsight.device import cpu_facts

BACKBONE = ["--backbone", "vit_tiny_patch16_224", "--backbone-set", "depth=4"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", type=float, nargs=2, default=(5.0, 480.0),
                   metavar=("SHORT", "LONG"), help="--time-budget of the two runs (seconds)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="more pretrain options for both runs (e.g. --set lr=0.001)")
    p.add_argument("--method", default="dino", choices=["dino", "mae"])
    p.add_argument("--out", default=None, help="default: benchmarks/results/METHOD_vit_acceptance")
    args = p.parse_args()
    args.out = args.out or f"benchmarks/results/{args.method}_vit_acceptance"
    return args


def pretrain(method: str, budget: float, run: Path, extra: list[str]) -> str:
    """One CLI run (a separate process, as a user runs it); returns the command as typed."""
    options = ["pretrain", "fashion-mnist", "--method", method, *BACKBONE, "--time-budget",
               f"{budget:g}", *extra]
    subprocess.run([str(Path(sys.executable).parent / "selfsight"), *options, "--out", str(run),
                    "--no-progress"], check=True)
    return "selfsight " + " ".join(options)


def measure(run: Path) -> dict:
    config = yaml.safe_load((run / "config.yaml").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [(r["step"], round(r["loss"], 4)) for r in rows if "loss" in r]
    result = selfsight.evaluate(run, "fashion-mnist", linear=False, pixels=False, full=False,
                                progress=False)
    out_dim = config["config"].get("out_dim")  # DINO's prototypes; MAE has none
    return {"steps": rows[-1]["step"], "images_seen": rows[-1].get("images_seen"),
            "images_per_sec": rows[-1].get("images_per_sec"),
            "precision": config["train"]["precision"], "batch_size": config["train"]["batch_size"],
            "ln_out_dim": round(math.log(out_dim), 4) if out_dim else None,
            "final_loss": losses[-1][1] if losses else None,
            "loss_curve": losses, "knn_k200": round(result["knn_k200"], 4),
            "knn_k20": round(result["knn_k20"], 4)}


def main() -> None:
    args = parse()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arms = {}
    for name, budget in zip(("short", "long"), args.budgets):
        run = out / f"budget_{budget:g}"
        if run.exists():
            raise SystemExit(f"{run} exists: choose another --out")
        started = time.monotonic()
        command = pretrain(args.method, budget, run, args.extra)
        arms[name] = {"command": command,
                      "budget_seconds": budget,
                      "wall_seconds": round(time.monotonic() - started, 1), **measure(run)}
        print(name, json.dumps({k: v for k, v in arms[name].items() if k != "loss_curve"}),
              flush=True)
    long, short = arms["long"], arms["short"]
    summary = {
        "what": f"{args.method} on a 4-block ViT-Tiny, Fashion-MNIST: final loss and kNN at a "
                "short against a long wall-clock budget",
        "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": {"machine": platform.machine(), **cpu_facts()}, "torch": torch.__version__,
        "loss_below_ln_out_dim": (round(long["ln_out_dim"] - long["final_loss"], 4)
                                  if long["ln_out_dim"] else None),
        "knn_k200_gain": round(long["knn_k200"] - short["knn_k200"], 4),
        **arms}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"final loss {long['final_loss']} (ln out_dim {long['ln_out_dim']}: "
          f"{summary['loss_below_ln_out_dim']} below; short run {short['final_loss']}); "
          f"kNN k=200 {short['knn_k200']} at "
          f"{short['budget_seconds']:g} s -> {long['knn_k200']} at {long['budget_seconds']:g} s "
          f"({summary['knn_k200_gain']:+.4f})")


if __name__ == "__main__":
    main()
