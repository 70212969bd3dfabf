"""Signals: per-time-step anomaly detection (PatchCore-style memory bank on a self-supervised 1-D
backbone) against the same bank on an untrained backbone, raw-window kNN distances (no learning)
and aeon's KMeansAD, on the anomaly recordings bundled with aeon (no download).

For each set: windows of the normal part -> ``selfsight pretrain`` (SimCLR, --budget seconds),
``selfsight anomaly fit`` on the normal part, ``anomaly score`` on the test part; every method
gives one score per step, measured against the per-step labels by AUC-ROC and AUC-PR (average
precision, sklearn).

- KDD-TSAD_135 (UCR anomaly archive, InternalBleeding16): normal = the TRAIN file's 1200 steps;
  scored = the TEST file's steps after them (1200..7500, one labelled anomaly of 12 steps).
- Daphnet_S06R02E0: aeon's excerpt has no labelled freeze-of-gait event, so four sensor faults
  are injected into the second half (a stuck channel, a spike, a gain change, added noise);
  normal = the first half.

    OMP_NUM_THREADS=1 python benchmarks/signals_anomaly.py --budget 60
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
from sklearn.metrics import average_precision_score, roc_auc_score

import selfsight
from selfsight.anomaly.bank import knn_distance
from selfsight.backbones import Backbone, load_backbone
from selfsight.device import cpu_facts
from selfsight.signals.data import load_signals
from selfsight.signals.readers import anomaly_labels, bundled_anomaly_file
from selfsight.signals.windows import cut_windows, stitch_windows

OUT = Path("benchmarks/results/signals_anomaly")
SELFSIGHT = str(Path(sys.executable).with_name("selfsight"))
SETS = ("KDD-TSAD_135", "Daphnet_S06R02E0")


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="*", default=list(SETS))
    p.add_argument("--budget", type=float, default=60, help="pretraining seconds per set")
    p.add_argument("--window", type=int, default=128, help="backbone length, in steps")
    p.add_argument("--stride", type=int, default=4, help="pretraining windows' stride")
    p.add_argument("--batch-size", type=int, default=64,
                   help="pretraining batch (the auto 256-512 gives only 20-40 steps a minute "
                        "on one CPU thread)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT)
    return p.parse_args()


def kdd() -> tuple[str, str, np.ndarray, int]:
    """(normal source, scored source, per-step labels of the scored row, first scored step)."""
    name = "tsad:KDD-TSAD_135"
    return name, name, anomaly_labels(bundled_anomaly_file(name, "test")), 1200


FAULTS = (  # (start, steps, what) in the scored half of Daphnet
    (400, 64, "channel 0 stuck at its value"),
    (1200, 16, "spike of +6 std on channels 3-5"),
    (2000, 96, "channel 7 gain x3 about its mean"),
    (2800, 64, "gaussian noise of 2 std on channel 4"),
)


def daphnet(folder: Path) -> tuple[str, str, np.ndarray, int]:
    """The first half as normal.npy, the second with FAULTS injected as test.npy."""
    full = load_signals("tsad:Daphnet_S06R02E0", verbose=False).signals[0]  # (9, 7040)
    half = full.shape[1] // 2
    normal, test = full[:, :half], full[:, half:].copy()
    std = normal.std(axis=1)
    rng = np.random.default_rng(0)
    labels = np.zeros(test.shape[1], np.int64)
    (a, n, _), (b, m, _), (c, k, _), (d, j, _) = FAULTS
    test[0, a:a + n] = test[0, a]
    test[3:6, b:b + m] += 6 * std[3:6, None]
    mean7 = test[7, c:c + k].mean()
    test[7, c:c + k] = mean7 + 3 * (test[7, c:c + k] - mean7)
    test[4, d:d + j] += 2 * std[4] * rng.standard_normal(j)
    for start, steps, _ in FAULTS:
        labels[start:start + steps] = 1
    np.save(folder / "normal.npy", normal[None])
    np.save(folder / "test.npy", test[None])
    return str(folder / "normal.npy"), str(folder / "test.npy"), labels, 0


def metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {"auc_roc": round(float(roc_auc_score(labels, scores)), 4),
            "auc_pr": round(float(average_precision_score(labels, scores)), 4)}


def scored_row(model: Path, source: str, folder: Path, first: int, length: int) -> np.ndarray:
    """The per-step scores of the last scored series (the test split), from step ``first``."""
    selfsight.anomaly_score(model, source, folder, progress=False)
    scores = np.load(folder / "step_scores.npy")[-1][first:first + length]
    assert len(scores) == length and np.isfinite(scores).all()
    return scores


def raw_knn(normal: np.ndarray, test: np.ndarray, width: int) -> np.ndarray:
    """Per-step score from the 1-NN Euclidean distance of every test window of ``width`` steps
    (stride 1, channels standardised by the normal part) to every normal window, stitched as
    the learned scores are: the discord distance of the matrix-profile literature (Yeh et al.,
    2016), no learning."""
    mean, std = normal.mean(axis=1, keepdims=True), normal.std(axis=1, keepdims=True) + 1e-8
    bank = cut_windows((normal - mean) / std, width, overlap=1 - 1 / width)[1]
    starts, queries = cut_windows((test - mean) / std, width, overlap=1 - 1 / width)
    distance = knn_distance(torch.from_numpy(queries.reshape(len(queries), -1)).float(),
                            torch.from_numpy(bank.reshape(len(bank), -1)).float()).numpy()
    return stitch_windows(np.repeat(distance[:, None], width, axis=1), starts, test.shape[1])


def kmeans_ad(normal: np.ndarray, test: np.ndarray, width: int) -> np.ndarray:
    """aeon's KMeansAD (Yairi et al., 2001), semi-supervised: clusters of normal windows."""
    from aeon.anomaly_detection.series.distance_based import KMeansAD

    detector = KMeansAD(n_clusters=20, window_size=width, stride=1, random_state=0)
    detector.fit(normal.T.astype(np.float64), axis=0)
    return np.asarray(detector.predict(test.T.astype(np.float64), axis=0), np.float64)


def untrained_copy(run: Path, folder: Path, seed: int) -> Path:
    """The run's architecture with fresh random weights (same input standardisation)."""
    torch.manual_seed(seed)
    Backbone(load_backbone(run).config).save(folder)
    return folder


def run_set(name: str, args: argparse.Namespace) -> dict:
    folder = args.out / name
    shutil.rmtree(folder, ignore_errors=True)  # a fresh run each time: figures for this budget
    folder.mkdir(parents=True)
    normal_src, test_src, labels, first = kdd() if name == "KDD-TSAD_135" else daphnet(folder)
    normal = load_signals(normal_src, verbose=False).signals[0]
    test_split = "test" if test_src.startswith("tsad:") else "train"
    test = load_signals(test_src, test_split, verbose=False).signals[0][:, first:]
    labels = labels[first:]
    _, windows = cut_windows(normal, args.window, overlap=1 - args.stride / args.window)
    np.save(folder / "windows.npy", windows)
    run = folder / "run"
    started = time.perf_counter()
    subprocess.run([SELFSIGHT, "pretrain", str(folder / "windows.npy"), "--time-budget",
                    str(args.budget), "--batch-size", str(args.batch_size), "--seed",
                    str(args.seed), "--out", str(run),
                    "--no-progress"], check=True)
    pretrain_s = time.perf_counter() - started
    row: dict = {"set": name, "channels": int(normal.shape[0]), "normal_steps":
                 int(normal.shape[1]), "scored_steps": int(test.shape[1]),
                 "anomalous_steps": int(labels.sum()), "pretrain_windows": len(windows),
                 "pretrain_seconds": round(pretrain_s, 1)}
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    row["pretrain_steps"] = steps[-1].get("step") if steps else None
    arms = {"selfsight (pretrained)": run,
            "same bank, untrained backbone": untrained_copy(run, folder / "untrained", args.seed)}
    for arm, backbone_dir in arms.items():
        started = time.perf_counter()
        model = selfsight.anomaly_fit(backbone_dir, normal_src,
                                      folder / f"{backbone_dir.name}_model", progress=False)
        scores = scored_row(model, test_src, folder / f"{backbone_dir.name}_scores", first,
                            test.shape[1])
        row[arm] = {**metrics(labels, scores), "seconds": round(time.perf_counter() - started, 1)}
    for width in (args.window, 32):
        started = time.perf_counter()
        row[f"raw-window kNN ({width} steps)"] = {
            **metrics(labels, raw_knn(normal, test, width)),
            "seconds": round(time.perf_counter() - started, 1)}
    started = time.perf_counter()  # last: aeon's numba pool raises torch's thread count
    row["aeon KMeansAD (32 steps)"] = {**metrics(labels, kmeans_ad(normal, test, 32)),
                                       "seconds": round(time.perf_counter() - started, 1)}
    return row


def main() -> None:
    args = parse()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cpu = cpu_facts()
    started = time.perf_counter()
    results = [run_set(name, args) for name in args.sets]
    summary = {
        "command": " ".join(["python", *sys.argv]),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpu": cpu,
        "torch": torch.__version__, "seconds": round(time.perf_counter() - started, 1),
        "protocol": "per-step AUC-ROC / AUC-PR on the scored part; pretraining (SimCLR, "
                    "resnet1d) and the memory bank see only the normal part; one run, seed "
                    f"{args.seed}; Daphnet faults injected: {[f[2] for f in FAULTS]}",
        "window": args.window, "budget_s": args.budget, "batch_size": args.batch_size,
        "results": results,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    arms = [k for k, v in results[0].items() if isinstance(v, dict)]
    print(f"{'method':34s}" + "".join(f"{r['set'][:16]:>18s}" for r in results))
    print(f"{'':34s}" + "".join(f"{'AUC-ROC  AUC-PR':>18s}" for _ in results))
    for arm in arms:
        print(f"{arm:34s}" + "".join(f"{r[arm]['auc_roc']:>9.3f}{r[arm]['auc_pr']:>9.3f}"
                                     for r in results))
    print(f"total {summary['seconds']} s; written to {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
