"""Anomaly detection on Fashion-MNIST with self-learned features (PatchCore-style memory bank,
Roth et al. 2022): one-class AUROC (strict / pool / untrained) and synthetic local defects.

One-class: each class in turn is normal, the other nine anomalous, on the 10,000 test images.
  strict    : --method (default SimCLR) pretrained only on that class's 6,000 training images
              (--budget s per class, --backbone, --set method options)
  pool      : one backbone pretrained on the whole unlabeled training pool (--pool-run)
  untrained : the same architecture with random weights (the floor)
The bank is the class's training images minus a --val-fraction slice that sets the threshold.
Local defects: per class, --defect-bank training items as the bank; --defect-test good test items
vs as many other test items of the class with a synthetic scratch/hole/stain/missing part.

Each (protocol, class) result is a JSON file (with the AnomalyConfig used); existing ones are
skipped, so a long run resumes (delete a folder to rerun it with other settings).

    python benchmarks/anomaly_fashion_mnist.py --budget 600
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

import selfsight
from selfsight.anomaly import (
    AnomalyConfig,
    AnomalyModel,
    image_auroc,
    pixel_auroc,
    pro_auc,
    save_overlay,
)
from selfsight.backbones import Backbone, backbone_config, load_backbone
from selfsight.cli import key_values
from selfsight.data import load_fashion_mnist
from selfsight.data.defects import add_defects

SCORES = ("patch", "pooled", "combined")
DEFECT_KEYS = ("auroc_patch", "auroc_pooled", "auroc_combined", "pixel_auroc", "pro_0.3")
POOL_RUNS = ("benchmarks/results/simclr_30min/selfsight",
             "benchmarks/results/methods_fashion_mnist/simclr/selfsight")
DEFAULT_BACKBONE = "resnet18_cpu"
REFERENCES = "published strict one-class mean AUROC: OC-SVM 92.8, GEOM 93.5, GOAD 94.1"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocols", nargs="*", default=["untrained", "pool", "strict", "defects"],
                   choices=["untrained", "pool", "strict", "defects"])
    p.add_argument("--classes", nargs="*", type=int, default=list(range(10)))
    p.add_argument("--budget", type=float, default=600, help="strict pretraining s per class")
    p.add_argument("--method", default="simclr")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="method option for strict pretraining, e.g. shifted_rotations=true")
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--view-size", type=int, default=20)
    p.add_argument("--pool-run", default=None, help=f"default: first existing of {POOL_RUNS}")
    p.add_argument("--image-size", type=int, default=None,
                   help="one-class input size (default: the backbone's)")
    p.add_argument("--levels", nargs="*", type=int, default=None,
                   help="one-class backbone levels (default: AnomalyConfig's)")
    p.add_argument("--defect-image-size", type=int, default=28)
    p.add_argument("--defect-levels", nargs="*", type=int, default=None)
    p.add_argument("--coreset", type=float, default=0.1)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--test-limit", type=int, default=None, help="score a random subset (quick)")
    p.add_argument("--bank-limit", type=int, default=None, help="bank images per class (quick)")
    p.add_argument("--defect-bank", type=int, default=1000)
    p.add_argument("--defect-test", type=int, default=200)
    p.add_argument("--overlays", type=int, default=8)
    p.add_argument("--out", default="benchmarks/results/anomaly_fashion_mnist")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args()


def pool_run(args: argparse.Namespace) -> Path:
    for run in [args.pool_run] if args.pool_run else POOL_RUNS:
        if (Path(run) / "backbone.safetensors").is_file():
            return Path(run)
    raise FileNotFoundError(f"no pool run: pass --pool-run (tried {list(POOL_RUNS)})")


def pool_name(args: argparse.Namespace) -> str:
    """'pool_<run name>', so results of another pool run are never mixed up with these."""
    run = pool_run(args)
    return f"pool_{run.parent.name if run.name == 'selfsight' else run.name}"


def untrained(args: argparse.Namespace) -> Backbone:
    torch.manual_seed(0)
    return Backbone(backbone_config(args.backbone, 1, args.view_size, None)).eval()


def strict_name(args: argparse.Namespace) -> str:
    """Result folder tag: method, backbone (unless the default), budget and any method options
    (never mix settings)."""
    extra = "".join(f"_{o.replace('=', '-')}" for o in args.set)
    backbone = "" if args.backbone == DEFAULT_BACKBONE else f"_{args.backbone}"
    return f"{args.method}{backbone}_{args.budget:g}s{extra}"


def strict_backbone(args: argparse.Namespace, images: np.ndarray, cls: int, out: Path) -> Backbone:
    run = out / f"strict_runs_{strict_name(args)}" / f"class_{cls}"
    if not (run / "backbone.safetensors").is_file():
        selfsight.pretrain(images, args.method, args.backbone, run, epochs=100_000,
                           view_size=args.view_size, time_budget=args.budget,
                           options=key_values(args.set, "--set"),
                           progress=not args.no_progress,
                           accelerator="gpu" if torch.cuda.is_available() else "cpu")
    return load_backbone(run)


def one_class(backbone: Backbone, train, test, cls: int, args: argparse.Namespace) -> dict:
    normal = train.images[train.labels == cls][:args.bank_limit]
    config = AnomalyConfig(image_size=args.image_size, coreset=args.coreset,
                           val_fraction=args.val_fraction, levels=args.levels)
    started = time.perf_counter()
    model = AnomalyModel.fit(backbone, normal, config, progress=not args.no_progress)
    fit_s = time.perf_counter() - started
    scores = model.score(test.images, progress=not args.no_progress, maps=False)
    anomalous = test.labels != cls
    cal = model.calibration
    result = {"class": cls, "class_name": train.classes[cls] if train.classes else str(cls),
              **{f"auroc_{s}": image_auroc(anomalous, scores[s]) for s in SCORES},
              "threshold": cal.threshold, "threshold_score": config.image_score,
              "normal_flagged": float(scores["anomalous"][~anomalous].mean()),
              "anomalies_flagged": float(scores["anomalous"][anomalous].mean()),
              "config": asdict(config), "bank": cal.info, "val_images": cal.val_images,
              "fit_seconds": round(fit_s, 1),
              "score_seconds": round(time.perf_counter() - started - fit_s, 1)}
    return result


def defects(backbone: Backbone, train, test, cls: int, args: argparse.Namespace,
            pictures: Path) -> dict:
    items = test.images[test.labels == cls]
    n = min(args.defect_test, len(items) // 2)
    good, broken = items[:n], items[n:2 * n]
    broken, masks, kinds = add_defects(broken, seed=cls)
    config = AnomalyConfig(image_size=args.defect_image_size, coreset=args.coreset,
                           val_fraction=args.val_fraction, levels=args.defect_levels)
    normal = train.images[train.labels == cls][:args.defect_bank]
    model = AnomalyModel.fit(backbone, normal, config, progress=not args.no_progress)
    scores = model.score(np.concatenate([good, broken]), progress=not args.no_progress)
    labels = np.r_[np.zeros(n), np.ones(n)]
    gt = np.concatenate([np.zeros_like(masks), masks])
    per_kind = {k: image_auroc(np.r_[np.zeros(n), np.ones(kinds.count(k))],
                               np.r_[scores["image"][:n],
                                     scores["image"][n:][np.array(kinds) == k]])
                for k in sorted(set(kinds))}
    vmax = float(np.quantile(scores["maps"].max(axis=(1, 2)), 0.99))
    for i in range(min(args.overlays, n)):
        j = n + i
        save_overlay(pictures / f"class{cls}_{i}_{kinds[i]}.png", broken[i], scores["maps"][j],
                     model.calibration.pixel_threshold, vmax=vmax, mask=masks[i],
                     title=f"class {cls} {kinds[i]}: score {scores['image'][j]:.3f} "
                           f"(threshold {model.calibration.threshold:.3f})")
    return {"class": cls, "good": n, "defective": n,
            **{f"auroc_{s}": image_auroc(labels, scores[s]) for s in SCORES},
            "pixel_auroc": pixel_auroc(gt, scores["maps"]), "pro_0.3": pro_auc(gt, scores["maps"]),
            "auroc_by_kind": per_kind, "config": asdict(config), "bank": model.calibration.info,
            "normal_flagged": float(scores["anomalous"][:n].mean()),
            "defective_flagged": float(scores["anomalous"][n:].mean())}


def cached(path: Path, compute) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


def mean_of(rows: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def main() -> None:
    args = parse()
    out = Path(args.out)
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    if args.test_limit:
        keep = np.random.default_rng(0).permutation(len(test))[:args.test_limit]
        test = test.subset(np.sort(keep))
    tag = "" if not (args.test_limit or args.bank_limit) else \
        f"_quick_t{args.test_limit}_b{args.bank_limit}"
    summary_file = out / f"summary{tag}.json"
    summary: dict = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    summary = {"one_class": {}, "defects": {}, **summary, "command": " ".join(sys.argv),
               "references": REFERENCES, "device": "cuda" if torch.cuda.is_available() else "cpu",
               "image_score_default": AnomalyConfig().image_score}
    backbones = {"untrained": lambda c: untrained(args),
                 "pool": lambda c: load_backbone(pool_run(args)),
                 "strict": lambda c: strict_backbone(
                     args, train.images[train.labels == c], c, out)}
    names = {"untrained": "untrained", "strict": f"strict_{strict_name(args)}"}
    if "pool" in args.protocols or "defects" in args.protocols:
        names["pool"] = pool_name(args)
    for protocol in [p for p in args.protocols if p in backbones]:
        make, folder = backbones[protocol], names[protocol]
        rows = [cached(out / f"{folder}{tag}" / f"class_{c}.json",
                       lambda c=c, make=make: one_class(make(c), train, test, c, args))
                for c in args.classes]
        summary["one_class"][folder] = {f"mean_auroc_{s}": mean_of(rows, f"auroc_{s}")
                                        for s in SCORES} | {"classes": args.classes}
    for protocol in ["untrained", "pool"] if "defects" in args.protocols else []:
        make, folder = backbones[protocol], names[protocol]
        pictures = out / f"overlays{tag}" / folder
        rows = [cached(out / f"defects_{folder}{tag}" / f"class_{c}.json",
                       lambda c=c, make=make, pictures=pictures: defects(
                           make(c), train, test, c, args, pictures))
                for c in args.classes]
        summary["defects"][folder] = {k: mean_of(rows, k) for k in DEFECT_KEYS}
    out.mkdir(parents=True, exist_ok=True)
    summary_file.write_text(json.dumps(summary, indent=2))
    print_table(summary)


def print_table(summary: dict) -> None:
    print(f"\none-class Fashion-MNIST, mean image AUROC (x100) over classes; {REFERENCES}")
    print(f"{'protocol':<24}" + "".join(f"{s:>10}" for s in SCORES))
    for protocol, row in summary["one_class"].items():
        print(f"{protocol:<24}" + "".join(f"{100 * row[f'mean_auroc_{s}']:>10.1f}"
                                          for s in SCORES))
    if summary["defects"]:
        print("\nlocal defects (scratch/hole/stain/missing), mean over classes (x100)")
        print(f"{'backbone':<24}" + "".join(f"{k:>15}" for k in DEFECT_KEYS))
        for name, row in summary["defects"].items():
            print(f"{name:<24}" + "".join(f"{100 * row[k]:>15.1f}" for k in DEFECT_KEYS))


if __name__ == "__main__":
    main()
