"""Signals: selfsight embeddings and fine-tuning against the time-series baselines on the UCR/UEA
sets bundled with aeon (no download): 1-NN on the raw series (Euclidean, and DTW, the field's
strong baseline), kNN and a linear probe on the embeddings, and label efficiency: the
pretrained backbone fine-tuned on 10% and 100% of the training labels against the same
architecture trained from scratch on the same labels (the supervised CNN baseline).

For each set: ``selfsight pretrain uea:NAME`` (training split only, no labels) for --budget
seconds; ``selfsight embed RUN uea:NAME`` (train then test rows) for the 1-NN, kNN (k=5) and
scikit-learn linear columns; ``selfsight evaluate RUN --data uea:NAME --quick
--label-fractions ...`` for kNN (k=20, capped at the training size), selfsight's linear probe,
1-NN on the series standardised per channel, and the fine-tune / scratch / linear arms over
--seeds seeds (a fixed --finetune-steps budget for both arms: the validation ladder would
hold out a class's only series at 10% of 40). Raw baselines on the series as the archive gives
them (BasicMotions is not z-normalised; GunPoint is), flattened across channels for Euclidean,
aeon's full-window multivariate DTW, are kept to check against the archive's published
figures. Writes benchmarks/results/signals_uea/summary.json with the command, CPU and threads.

Sets of series of several lengths (JapaneseVowels: 7 to 29 steps, 12 channels, 9 speakers) are
cropped or padded with each series' last value to the training split's longest, as
``load_signals`` reads them and states (``length_note``); the raw baselines, DTW included, run on
those same arrays.

    OMP_NUM_THREADS=1 python benchmarks/signals_uea.py \
        --sets BasicMotions GunPoint ItalyPowerDemand JapaneseVowels --budget 45
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from selfsight.device import cpu_facts
from selfsight.run_folder import RunFolder
from selfsight.signals.data import load_signal_splits

OUT = Path("benchmarks/results/signals_uea")
# aeon's bundled classification sets (its regression sets, CardanoSentiment and Covid3Month,
# have no classes to score).
SETS = ("BasicMotions", "GunPoint", "ItalyPowerDemand", "JapaneseVowels", "ArrowHead",
        "OSULeaf", "ACSF1", "PickupGestureWiimoteZ")
SELFSIGHT = str(Path(sys.executable).with_name("selfsight"))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="*", default=["BasicMotions", "GunPoint"], choices=SETS)
    p.add_argument("--budget", type=float, default=90, help="pretraining seconds per set")
    p.add_argument("--method", default="simclr")
    p.add_argument("--backbone", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0],
                   help="label fractions of the fine-tune / scratch comparison")
    p.add_argument("--seeds", type=int, default=3, help="label subsets and scratch inits")
    p.add_argument("--finetune-steps", type=int, default=150,
                   help="fine-tuning steps of both arms at every fraction")
    p.add_argument("--out", type=Path, default=OUT)
    return p.parse_args()


def one_nn(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
    knn = KNeighborsClassifier(n_neighbors=1).fit(train, y_train)
    return float((knn.predict(test) == y_test).mean())


def dtw_one_nn(train: np.ndarray, y_train: np.ndarray, test: np.ndarray,
               y_test: np.ndarray) -> float:
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

    knn = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")
    knn.fit(train.astype(np.float64), y_train)
    return float((knn.predict(test.astype(np.float64)) == y_test).mean())


def evaluate(run: Path, data: str, args: argparse.Namespace) -> tuple[dict, dict, float]:
    """``selfsight evaluate`` with the label-efficiency study: (EvalResult JSON, its
    LabelEfficiency JSON, seconds)."""
    started = time.perf_counter()
    subprocess.run([SELFSIGHT, "evaluate", str(run), "--data", data, "--quick",
                    "--label-fractions", *map(str, args.fractions), "--seeds", str(args.seeds),
                    "--min-steps", str(args.finetune_steps), "--step-ladder", "1",
                    "--no-progress"], check=True)
    seconds = time.perf_counter() - started
    folder = RunFolder(run)
    return (json.loads(folder.evaluation(data).read_text()),
            json.loads(folder.evaluation(data, "_label_efficiency.json").read_text()), seconds)


def run_set(name: str, args: argparse.Namespace) -> dict:
    data = f"uea:{name}"
    train, test = load_signal_splits(data, verbose=False)
    run = args.out / name / "run"
    if run.exists():
        shutil.rmtree(run)  # a fresh run each time: the figures are for this budget
    started = time.perf_counter()
    subprocess.run([SELFSIGHT, "pretrain", data, "--method", args.method, "--backbone",
                    args.backbone, "--time-budget", str(args.budget), "--seed", str(args.seed),
                    "--out", str(run), "--no-progress"], check=True)
    pretrain_s = time.perf_counter() - started
    embeddings = args.out / name / "embeddings.npy"
    subprocess.run([SELFSIGHT, "embed", str(run), data, "--out", str(embeddings)], check=True)
    rows = json.loads(Path(f"{embeddings}.json").read_text())["files"]
    features = np.load(embeddings)
    n = len(train)
    assert rows[0] == f"{name}-train/0" and rows[n] == f"{name}-test/0", rows[n - 1:n + 1]
    e_train, e_test = features[:n], features[n:]
    y_train, y_test = train.labels, test.labels
    flat = (train.signals.reshape(n, -1), test.signals.reshape(len(test), -1))
    started = time.perf_counter()
    dtw = dtw_one_nn(train.signals, y_train, test.signals, y_test)
    dtw_s = time.perf_counter() - started
    k = min(5, n)
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(e_train, y_train)
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))
    linear.fit(e_train, y_train)
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [s["loss"] for s in steps if "loss" in s]
    evaluation, efficiency, evaluate_s = evaluate(run, data, args)
    return {
        "set": name, "train": n, "test": len(test), "channels": train.channels,
        "length": train.length, "classes": len(train.classes or []),
        "length_note": "; ".join(train.notes + test.notes) or None,
        "embedding_1nn": one_nn(e_train, y_train, e_test, y_test),
        "raw_euclidean_1nn": one_nn(*flat[:1], y_train, flat[1], y_test),
        "raw_dtw_1nn": dtw,
        f"embedding_knn_k{k}_cosine": float((knn.predict(e_test) == y_test).mean()),
        "embedding_linear": float((linear.predict(e_test) == y_test).mean()),
        "pretrain_seconds": round(pretrain_s, 1), "dtw_seconds": round(dtw_s, 1),
        "steps": steps[-1].get("step") if steps else None,
        "loss_first_last": [losses[0], losses[-1]] if losses else None,
        "embedding_dim": int(features.shape[1]),
        "evaluate": {key: evaluation.get(key) for key in (
            *(k for k in evaluation if k.startswith("knn_k")), "linear_top1",
            "raw_euclidean_1nn", "raw_dtw_1nn", "raw_baseline", "precision")},
        "label_efficiency": {key: efficiency[key] for key in (
            "fractions", "seeds", "mean", "std", "arms", "savings_factor", "savings_note")},
        "evaluate_seconds": round(evaluate_s, 1),
    }


def table_line(r: dict) -> str:
    mean, e = r["label_efficiency"]["mean"], r["evaluate"]
    arms = ", ".join(f"{100 * float(f):g}%: fine-tuned {mean['pretrained'][f]:.3f} / scratch "
                     f"{mean['scratch'][f]:.3f} / linear {mean['linear'][f]:.3f}"
                     for f in map(str, r["label_efficiency"]["fractions"]))
    return (f"{r['set']}: 1-NN embedding {r['embedding_1nn']:.3f}, raw Euclidean "
            f"{r['raw_euclidean_1nn']:.3f}, raw DTW {r['raw_dtw_1nn']:.3f}; kNN k=20 "
            f"{e['knn_k20']:.3f}, "
            f"linear probe {e['linear_top1']:.3f}; {arms}")


def main() -> None:
    args = parse()
    args.out.mkdir(parents=True, exist_ok=True)
    # Before aeon's DTW runs: its numba thread pool raises torch's thread count in this process
    # (training, embedding and evaluation run in their own processes, with the environment's
    # threads).
    cpu = cpu_facts()
    started = time.perf_counter()
    results = [run_set(name, args) for name in args.sets]
    summary = {
        "command": " ".join(["python", *sys.argv]),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": cpu, "torch": torch.__version__,
        "protocol": "self-supervised pretraining on the training split without labels; "
                    "classifiers fit on training-split embeddings with labels, scored on the "
                    "test split; one pretraining run, seed " + str(args.seed) + "; label "
                    f"efficiency over seeds {list(range(args.seeds))} (label subset and scratch "
                    f"initialisation), {args.finetune_steps} fine-tuning steps for both arms",
        "method": args.method, "backbone": args.backbone, "budget_s": args.budget,
        "total_seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for r in results:
        print(table_line(r))


if __name__ == "__main__":
    main()
