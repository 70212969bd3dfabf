"""Signals: 1-NN accuracy of selfsight embeddings against 1-NN on the raw series (Euclidean,
and DTW, the field's strong baseline), plus kNN and a linear probe on the embeddings, on the
UCR/UEA sets bundled with aeon (no download).

For each set: ``selfsight pretrain uea:NAME`` (training split only, no labels) for --budget
seconds, ``selfsight embed RUN uea:NAME`` (train then test rows), then the classifiers on the
embeddings with the training labels, scored on the test split. Raw baselines use the series as
the archive gives them (BasicMotions is not z-normalised; GunPoint is), flattened across
channels for Euclidean; DTW is aeon's full-window multivariate DTW. Writes
benchmarks/results/signals_uea/summary.json with the command, CPU and thread count.

    OMP_NUM_THREADS=1 python benchmarks/signals_uea.py --sets BasicMotions GunPoint --budget 90
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
from selfsight.signals.data import load_signal_splits

OUT = Path("benchmarks/results/signals_uea")
SELFSIGHT = str(Path(sys.executable).with_name("selfsight"))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="*", default=["BasicMotions", "GunPoint"])
    p.add_argument("--budget", type=float, default=90, help="pretraining seconds per set")
    p.add_argument("--method", default="simclr")
    p.add_argument("--backbone", default="auto")
    p.add_argument("--seed", type=int, default=0)
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
    return {
        "set": name, "train": n, "test": len(test), "channels": train.channels,
        "length": train.length, "classes": len(train.classes or []),
        "embedding_1nn": one_nn(e_train, y_train, e_test, y_test),
        "raw_euclidean_1nn": one_nn(*flat[:1], y_train, flat[1], y_test),
        "raw_dtw_1nn": dtw,
        f"embedding_knn_k{k}_cosine": float((knn.predict(e_test) == y_test).mean()),
        "embedding_linear": float((linear.predict(e_test) == y_test).mean()),
        "pretrain_seconds": round(pretrain_s, 1), "dtw_seconds": round(dtw_s, 1),
        "steps": steps[-1].get("step") if steps else None,
        "loss_first_last": [losses[0], losses[-1]] if losses else None,
        "embedding_dim": int(features.shape[1]),
    }


def main() -> None:
    args = parse()
    args.out.mkdir(parents=True, exist_ok=True)
    # Before aeon's DTW runs: its numba thread pool raises torch's thread count in this process
    # (training and embedding run in their own processes, with the environment's threads).
    cpu = cpu_facts()
    results = [run_set(name, args) for name in args.sets]
    summary = {
        "command": " ".join(["python", *sys.argv]),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": cpu, "torch": torch.__version__,
        "protocol": "self-supervised pretraining on the training split without labels; "
                    "classifiers fit on training-split embeddings with labels, scored on the "
                    "test split; one run, seed " + str(args.seed),
        "method": args.method, "backbone": args.backbone, "budget_s": args.budget,
        "results": results,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for r in results:
        print(f"{r['set']}: 1-NN embedding {r['embedding_1nn']:.3f}, raw Euclidean "
              f"{r['raw_euclidean_1nn']:.3f}, raw DTW {r['raw_dtw_1nn']:.3f}; linear "
              f"{r['embedding_linear']:.3f}")


if __name__ == "__main__":
    main()
