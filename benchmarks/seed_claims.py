"""The two claims behind selfsight's own methods, at a budget where they can show: tens of epochs,
several seeds, today's CPU recipe (the defaults: ``resnet10_cpu``, its batch), PROTOCOL.md.

- Hierarchical (coarse-to-fine, multi-level) contrastive learning reaches SimCLR's accuracy in
  about 70% of SimCLR's time.
- Global+local contrastive learning with several networks (MNCLGLF, arXiv 2306.15930) beats
  SimCLR at equal epochs (the paper: CIFAR-10 linear 90.18 against 87.11 after 200 epochs).

Every arm trains the same number of epochs on Fashion-MNIST's 60,000 training images, once per
seed, and logs an online kNN (k=200, 10,000-image bank; its time is kept out of the clock) after
every ``--knn-every`` epochs, so one run gives both comparisons: at equal epochs (the final
values) and at equal time (each arm's online kNN at SimCLR's training time). Then kNN (k=200,
k=20) and the linear probe of PROTOCOL.md on the final backbone. Arms: ``simclr``;
``hierarchical``, its best variant at 240 s (one temperature, DetCo's fixed level weights);
``hierarchical_simclr_recipe``, the same with SimCLR's small-image recipe on every level;
``hierarchical_full`` (per-level temperatures, coarse-to-fine weights, important-sample
sampling); ``globallocal`` (three networks, the intended gradients); and each arm at the setting
that scored best on a validation split of the training set (``simclr_t02``,
``hierarchical_lr2``, ``globallocal_t05``; ``seed_claims_validation.py``), the last two compared
with ``simclr_t02``. A run whose result exists is kept, so the script can be stopped and
started again; ``--summarise`` trains nothing and summarises the results that exist.

    .venv/bin/python benchmarks/seed_claims.py --epochs 50 --seeds 0 1

``time_to_simclr``: the training time an arm's online-kNN curve (linearly interpolated) needs to
reach the final online kNN of its SimCLR arm's run with the same seed (``compared_with``), over
the time that run needs for it, averaged over seeds; null when a seed never gets there. Time is
the training process's CPU time (online kNN excluded): run with one thread, it is compute time
that other work on the machine does not stretch; wall seconds are kept beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import selfsight
from selfsight.cli import key_values
from selfsight.device import cpu_facts

OUT = Path(__file__).parent / "results" / "seed_claims"
ONE_TEMPERATURE = ["start_weights=()", "temperatures=(0.2,0.2,0.2,0.2)"]
# SimCLR's small-image recipe (recipes.py: lr 1.5, temperature 0.1, weight decay 1e-4, 512-wide
# projector) on every level: the SimCLR arm gets it, the hierarchical method's defaults do not.
SIMCLR_RECIPE = ["start_weights=()", "temperatures=(0.1,0.1,0.1,0.1)", "lr=1.5",
                 "weight_decay=0.0001", "proj_hidden_dim=512"]
ARMS: dict[str, tuple[str, list[str], float]] = {  # name: (method, --set options, importance)
    "simclr": ("simclr", [], 0.0),
    "hierarchical": ("hierarchical", ONE_TEMPERATURE, 0.0),
    "hierarchical_simclr_recipe": ("hierarchical", SIMCLR_RECIPE, 0.0),
    "hierarchical_full": ("hierarchical", [], 0.25),
    "globallocal": ("globallocal", [], 0.0),
    # Each arm's best setting on the validation split (seed_claims_validation.py): the softer
    # temperature for SimCLR, twice the learning rate for the hierarchical method, the sharper
    # temperature for global+local.
    "simclr_t02": ("simclr", ["temperature=0.2"], 0.0),
    "hierarchical_lr2": ("hierarchical", [*ONE_TEMPERATURE, "lr=2.0"], 0.0),
    "globallocal_t05": ("globallocal", ["temperature=0.5"], 0.0),
}
# Tuned arms are compared with tuned SimCLR; every other arm with SimCLR at its defaults.
REFERENCE = {"hierarchical_lr2": "simclr_t02", "globallocal_t05": "simclr_t02"}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--knn-every", type=int, default=1, help="epochs between online kNN checks")
    p.add_argument("--set", action="append", default=[], metavar="ARM:KEY=VALUE",
                   help="an extra option for one arm, e.g. simclr:temperature=0.2")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--summarise", action="store_true",
                   help="train nothing: summarise the arms' seeds whose results exist")
    return p.parse_args()


def extra_options(args: argparse.Namespace, arm: str) -> list[str]:
    return [s.split(":", 1)[1] for s in args.set if s.split(":", 1)[0] == arm]


def run_arm(args: argparse.Namespace, arm: str, seed: int, out: Path) -> dict:
    """Train and evaluate one arm with one seed (or read the result of an earlier call)."""
    result_file = out / arm / f"seed{seed}.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    method, options, importance = ARMS[arm]
    options = [*options, *extra_options(args, arm)]
    run = out / arm / f"seed{seed}"
    if run.exists():  # an interrupted run: train it again from the start
        import shutil

        shutil.rmtree(run)
    print(f"{arm} seed {seed}: {method} {options} importance {importance}", flush=True)
    selfsight.pretrain("fashion-mnist", method, out=run, epochs=args.epochs, seed=seed,
                       options=key_values(options, "--set"), knn_every=args.knn_every,
                       importance=importance, progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    last = records[-1]
    # (CPU seconds, images seen, online kNN, wall seconds): CPU time is the clock compared, so
    # other work on a shared machine does not bend the comparison (one thread: compute time).
    curve = [(r["cpu_seconds"], r["images_seen"], r["online_knn"], r["elapsed"])
             for r in records if "online_knn" in r]
    scores = selfsight.evaluate(run, progress=False, pixels=False, full=False)
    result = {"arm": arm, "method": method, "options": options, "importance": importance,
              "seed": seed, "epochs": round(last["images_seen"] / 60_000, 2),
              "seconds": last["cpu_seconds"], "wall_seconds": last["elapsed"],
              "images_per_sec": round(last["images_seen"] / last["cpu_seconds"], 1),
              "final_loss": last["loss"], "curve": curve,
              **{k: scores[k] for k in ("knn_k200", "knn_k20", "linear_top1")}}
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result, indent=1))
    return result


def time_to_reach(curve: list, target: float) -> float | None:
    """Seconds at which the (seconds, images, kNN, ...) curve first reaches ``target``, linearly
    interpolated between checks; None when it never does."""
    before = (0.0, 0.0)
    for elapsed, _, knn, *_ in curve:
        if knn >= target:
            t0, k0 = before
            return t0 + (elapsed - t0) * (target - k0) / max(knn - k0, 1e-12)
        before = (elapsed, knn)
    return None


def knn_at(curve: list, seconds: float) -> float:
    """The online kNN at ``seconds`` of training (interpolated; the last value past the end)."""
    times = [c[0] for c in curve]
    return float(np.interp(seconds, times, [c[2] for c in curve]))


def summarise(results: dict[str, list[dict]]) -> dict:
    def spread(values: list[float]) -> dict:
        return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4),
                "values": [round(v, 4) for v in values]}

    # Each seed is compared with its SimCLR arm's run of the same seed (same machine, same
    # conditions): the time to reach that run's final online kNN, over the time it took.
    by_seed = {arm: {r["seed"]: r for r in runs} for arm, runs in results.items()}
    simclr = by_seed.get("simclr", {})
    target = float(np.mean([r["curve"][-1][2] for r in simclr.values()])) if simclr else None

    def ratio(run: dict, reference_arm: str) -> float | None:
        reference = by_seed.get(reference_arm, {}).get(run["seed"])
        if reference is None:
            return None
        goal = reference["curve"][-1][2]
        reached = time_to_reach(run["curve"], goal)
        return None if reached is None else reached / time_to_reach(reference["curve"], goal)

    arms = {}
    for arm, runs in results.items():
        reference_arm = REFERENCE.get(arm, "simclr")
        references = by_seed.get(reference_arm, {})
        reference_seconds = (float(np.mean([r["seconds"] for r in references.values()]))
                             if references else None)
        reached = [t for t in (ratio(r, reference_arm) for r in runs) if t is not None]
        arms[arm] = {
            "method": runs[0]["method"], "options": runs[0]["options"],
            "importance": runs[0]["importance"], "seeds": [r["seed"] for r in runs],
            "compared_with": reference_arm,
            "epochs": float(np.mean([r["epochs"] for r in runs])),
            "seconds": spread([r["seconds"] for r in runs]),
            "images_per_sec": spread([r["images_per_sec"] for r in runs]),
            "knn_k200": spread([r["knn_k200"] for r in runs]),
            "knn_k20": spread([r["knn_k20"] for r in runs]),
            "linear": spread([r["linear_top1"] for r in runs]),
            "final_online_knn": spread([r["curve"][-1][2] for r in runs]),
            "online_knn_at_simclr_time": spread([knn_at(r["curve"], reference_seconds)
                                                 for r in runs]) if reference_seconds else None,
            "time_to_simclr": (round(float(np.mean(reached)), 3)
                               if len(reached) == len(runs) else None),
            "seeds_reaching_simclr": len(reached),
        }
    return {"simclr_final_online_knn": target and round(target, 4), "arms": arms}


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_time, by_epoch) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (arm, runs) in enumerate(results.items()):
        colour = f"C{i}"
        for j, r in enumerate(runs):
            t, images, knn, _ = zip(*r["curve"])
            label = arm if j == 0 else None
            by_time.plot(np.array(t) / 60, knn, color=colour, alpha=0.8, label=label)
            by_epoch.plot(np.array(images) / 60_000, knn, color=colour, alpha=0.8, label=label)
    by_time.set(xlabel="training CPU minutes", ylabel="online kNN (k=200)", title="equal time")
    by_epoch.set(xlabel="epochs", title="equal epochs")
    for ax in (by_time, by_epoch):
        ax.grid(alpha=0.3)
    by_time.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    args = parse()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.summarise:
        results = {arm: [json.loads((out / arm / f"seed{seed}.json").read_text())
                         for seed in args.seeds if (out / arm / f"seed{seed}.json").is_file()]
                   for arm in args.arms}
        results = {arm: runs for arm, runs in results.items() if runs}
    else:
        results = {arm: [run_arm(args, arm, seed, out) for seed in args.seeds]
                   for arm in args.arms}
    summary = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
               "cpu": cpu_facts(), "threads": torch.get_num_threads(),
               "epochs": args.epochs, "knn_every": args.knn_every, **summarise(results)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(results, out / "time_to_accuracy.png")
    print(f"{'arm':<18} {'epochs':>6} {'img/s':>7} {'kNN k200':>15} {'linear':>15} "
          f"{'online@SimCLR s':>15} {'time to SimCLR':>14}")
    for arm, a in summary["arms"].items():
        at = a["online_knn_at_simclr_time"]
        print(f"{arm:<18} {a['epochs']:>6.1f} {a['images_per_sec']['mean']:>7.0f} "
              f"{a['knn_k200']['mean']:>8.4f}+-{a['knn_k200']['std']:.4f} "
              f"{a['linear']['mean']:>8.4f}+-{a['linear']['std']:.4f} "
              f"{at['mean'] if at else float('nan'):>15.4f} {a['time_to_simclr']!s:>14}")
    print(f"written to {out / 'summary.json'}")


if __name__ == "__main__":
    main()
