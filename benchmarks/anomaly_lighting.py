"""Anomaly detection when the lighting changes after the bank was fitted: does a brighter lamp
or a duller exposure make every normal part look anomalous?

One-class Fashion-MNIST with one backbone pretrained on the whole unlabeled pool (as the
``pool`` protocol of anomaly_fashion_mnist.py): each class in turn is normal, its training
images (minus the held-out calibration slice) are the bank, and the 10,000 test images are
scored as they are and with every test image brightened or its contrast lowered (the robustness
corruptions at --severity). Reported per condition: image AUROC (normal against the other nine
classes, all under the same lighting) and the share of normal test images flagged at the
threshold calibrated on clean normal images. Each backbone runs as trained and, where it was
trained without it, with ``standardize`` switched on (same weights).

    python benchmarks/anomaly_lighting.py --severity 3 \
        --run benchmarks/results/evaluate_fashion_mnist/simclr_rerun/selfsight
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from robustness_standardize import with_standardize
from selfsight.anomaly import AnomalyConfig, AnomalyModel, image_auroc
from selfsight.backbones import load_backbone
from selfsight.data import load_fashion_mnist
from selfsight.eval.robustness import corrupt

CONDITIONS = ("clean", "brightness", "contrast")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--classes", nargs="*", type=int, default=list(range(10)))
    p.add_argument("--severity", type=int, default=2, help="1..5, as in the robustness table")
    p.add_argument("--coreset", type=float, default=0.01)
    p.add_argument("--out", default="benchmarks/results/anomaly_lighting")
    args = p.parse_args()
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    lit = {"clean": test.images,
           **{c: corrupt(test.images, c, args.severity) for c in CONDITIONS[1:]}}
    trained = load_backbone(args.run)
    arms = {"as trained": trained}
    if not trained.config.standardize:
        arms["standardize switched on"] = with_standardize(trained)
    rows = []
    for arm, backbone in arms.items():
        for cls in args.classes:
            started = time.perf_counter()
            model = AnomalyModel.fit(backbone, train.images[train.labels == cls],
                                     AnomalyConfig(coreset=args.coreset), progress=False)
            normal = test.labels == cls
            row = {"arm": arm, "class": cls}
            for condition, images in lit.items():
                scores = model.score(images, progress=False, maps=False)
                row[condition] = {"auroc": image_auroc(~normal, scores["image"]),
                                  "normal_flagged": float(scores["anomalous"][normal].mean()),
                                  "anomalies_flagged": float(scores["anomalous"][~normal].mean())}
            row["seconds"] = round(time.perf_counter() - started, 1)
            rows.append(row)
            print(f"{arm}, class {cls}: " + "; ".join(
                f"{c} AUROC {row[c]['auroc']:.3f}, normal flagged {row[c]['normal_flagged']:.3f}"
                for c in CONDITIONS), flush=True)
    summary = {arm: {c: {k: round(float(np.mean([r[c][k] for r in rows if r["arm"] == arm])), 4)
                         for k in ("auroc", "normal_flagged", "anomalies_flagged")}
                     for c in CONDITIONS} for arm in arms}
    for arm, by_condition in summary.items():
        print(f"{arm}: " + "; ".join(
            f"{c} mean AUROC {v['auroc']:.4f}, normal flagged {v['normal_flagged']:.3f}"
            for c, v in by_condition.items()))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(
        {"command": " ".join(sys.argv), "severity": args.severity, "summary": summary,
         "rows": rows}, indent=2))
    print(f"written to {out / 'result.json'}")


if __name__ == "__main__":
    main()
