"""Ablations of selfsight's own methods on Fashion-MNIST at one wall-clock budget (PROTOCOL.md).

Hierarchical: SimCLR; + multi-level (DetCo weights, one temperature); + per-level temperatures;
+ coarse-to-fine weights; + important-sample sampling. Global+local (MNCLGLF): full; no local
branch; no nearest-neighbour positive; the authors' release gradient. Every arm logs online kNN
(k=200, 10k-image bank) after each epoch, so time-to-accuracy curves come out of the same runs;
evaluation time is kept out of the budget. Arms run one after another, in the order given, each
in its own process; an arm whose result exists is not rerun.

    python benchmarks/own_methods_fashion_mnist.py --budget 240
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
FIXED = ["start_weights=()"]
ARMS: dict[str, tuple[str, list[str], float]] = {  # name: (method, --set options, importance)
    "simclr": ("simclr", [], 0.0),
    "hier_multilevel": ("hierarchical", [*FIXED, "temperatures=(0.2,0.2,0.2,0.2)"], 0.0),
    "hier_per_level_temps": ("hierarchical", FIXED, 0.0),
    "hier_coarse_to_fine": ("hierarchical", [], 0.0),
    "hier_importance": ("hierarchical", [], 0.25),
    "globallocal": ("globallocal", [], 0.0),
    "gl_no_local": ("globallocal", ["local_weight=0"], 0.0),
    "gl_no_nearest_neighbour": ("globallocal", ["nearest_neighbour=false"], 0.0),
    "gl_release_gradient": ("globallocal", ["release_gradient=true"], 0.0),
}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=240)
    p.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--out", default="benchmarks/results/own_methods_fashion_mnist")
    return p.parse_args()


def run_arm(name: str, budget: float, out: Path) -> dict:
    method, options, importance = ARMS[name]
    result_file = out / name / "result.json"
    if not result_file.is_file():
        cmd = [sys.executable, str(HERE / "pretrain_fashion_mnist.py"), "--budget", str(budget),
               "--method", method, "--knn-every", "1", "--importance", str(importance),
               "--backbone", "resnet18_cpu", "--batch-size", "256",  # section 4's recipe
               "--out", str(out / name)]
        cmd += [arg for option in options for arg in ("--set", option)]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    report = json.loads(result_file.read_text())
    records = [json.loads(line) for line in (out / name / "selfsight" / "metrics.jsonl").open()]
    curve = [(r["elapsed"], r["online_knn"]) for r in records if "online_knn" in r]
    return {**report["selfsight"], "method": method, "options": options,
            "importance": importance, "curve": curve}


def time_to_reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """First wall-clock second at which the online kNN reaches ``target``, linearly
    interpolated between evaluations (None if never)."""
    previous = (0.0, 0.0)
    for t, acc in curve:
        if acc >= target:
            t0, a0 = previous
            return t0 + (target - a0) / max(acc - a0, 1e-9) * (t - t0)
        previous = (t, acc)
    return None


def plot(table: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, prefix, title in ((axes[0], ("simclr", "hier"), "hierarchical ablation"),
                              (axes[1], ("simclr", "gl", "globallocal"), "global+local")):
        for name, row in table["arms"].items():
            if name.startswith(prefix) and row["curve"]:
                t, acc = zip(*row["curve"], strict=True)
                ax.plot(t, acc, marker="o", label=name, lw=2.5 if name == "simclr" else 1.5)
        ax.set(title=title, xlabel="training seconds (2-core CPU)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("online kNN (k=200, 10k bank)")
    fig.tight_layout()
    fig.savefig(out / "time_to_accuracy.png", dpi=120)


def main() -> None:
    args = parse()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table: dict = {"budget_seconds": args.budget, "command": " ".join(sys.argv), "arms": {}}
    for name in args.arms:
        table["arms"][name] = run_arm(name, args.budget, out)
        (out / "table.json").write_text(json.dumps(table, indent=2))
    if "simclr" in table["arms"]:
        base = table["arms"]["simclr"]
        target = base["curve"][-1][1]
        t_base = time_to_reach(base["curve"], target)
        for row in table["arms"].values():
            t = time_to_reach(row["curve"], target)
            row["seconds_to_simclr_final_online_knn"] = None if t is None else round(t, 1)
            row["time_ratio_vs_simclr"] = None if t is None else round(t / t_base, 3)
    (out / "table.json").write_text(json.dumps(table, indent=2))
    plot(table, out)
    print(f"\n{'arm':<24} {'img/s':>6} {'ep':>5} {'kNN200':>7} {'kNN20':>6} {'linear':>7} "
          f"{'online':>7} {'t->SimCLR':>9}")
    for name, r in table["arms"].items():
        online = r["curve"][-1][1] if r["curve"] else np.nan
        print(f"{name:<24} {r['images_per_sec']:>6.0f} {r['epochs']:>5.2f} {r['knn_k200']:>7.4f} "
              f"{r['knn_k20']:>6.4f} {r['linear_top1']:>7.4f} {online:>7.4f} "
              f"{r.get('time_ratio_vs_simclr')!s:>9}")


if __name__ == "__main__":
    main()
