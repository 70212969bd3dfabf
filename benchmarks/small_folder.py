"""A small labelled folder that is not Fashion-MNIST, trained with the defaults a new user gets.

scikit-learn's handwritten digits (1,797 real 8x8 scans, 10 classes; shipped with the package) are
written once as 32x32 PNGs in class folders, split 80/20 into train/ and test/ (stratified,
seed 0). Each arm runs ``selfsight pretrain FOLDER --time-budget B`` as a new user would, in a
fresh process (its peak resident memory measured), then the frozen backbone is scored by kNN
and a linear probe beside raw-pixel kNN on the same images:

- ``defaults``: no other flag (the device's defaults: on a CPU ``resnet10_cpu``, a batch sized
  to the folder, the images' own 32 px, the precision the CPU runs fastest);
- ``resnet18`` (with ``--compare-resnet18``): the full ResNet-18 at batch 256 and 64 px, the
  defaults before.

    python benchmarks/small_folder.py --budget 120 --compare-resnet18
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from process_cost import run_measured

OUT = Path("benchmarks/results/small_folder")


def write_digits(root: Path) -> Path:
    """The digits as 32x32 8-bit PNGs in root/{train,test}/<digit>/ (skipped if present)."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if (root / "test").is_dir():
        return root
    digits = load_digits()
    images = (digits.images * (255 / 16)).round().astype(np.uint8)  # 0..16 -> 0..255
    train, test = train_test_split(np.arange(len(images)), test_size=0.2,
                                   stratify=digits.target, random_state=0)
    for split, rows in (("train", train), ("test", test)):
        for i in rows:
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).resize((32, 32), Image.BILINEAR).save(folder / f"{i}.png")
    return root


def pretrain(data: Path, run: Path, budget: float, extra: list[str]) -> dict:
    exe = Path(sys.executable).parent / "selfsight"
    command = [str(exe), "pretrain", str(data), "--time-budget", str(budget), "--out", str(run),
               "--no-progress", *extra]
    cost = run_measured(command)
    if cost.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{cost.stderr[-3000:]}")
    last = [json.loads(line) for line in (run / "metrics.jsonl").open()][-1]
    chosen = [line for line in cost.stderr.splitlines()
              if line.startswith(("backbone:", "batch size:", "precision:"))]
    return {"command": " ".join(["selfsight", *command[1:]]),
            "wall_seconds": round(cost.seconds, 1), "peak_rss_mb": round(cost.peak_rss_mb),
            "trained_seconds": last["elapsed"], "steps": last["step"],
            "images_seen": last["images_seen"],
            "images_per_sec": round(last["images_seen"] / last["elapsed"], 1), "chosen": chosen}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=120)
    p.add_argument("--compare-resnet18", action="store_true")
    p.add_argument("--work", default="runs/small_folder", help="images and run folders")
    args = p.parse_args()
    import selfsight
    from selfsight.device import cpu_facts

    work = Path(args.work)
    data = write_digits(work / "digits32")
    arms = {"defaults": []}
    if args.compare_resnet18:
        arms["resnet18"] = ["--backbone", "resnet18", "--batch-size", "256", "--image-size", "64"]
    summary: dict = {"command": " ".join(["python", *sys.argv]), "cpu": cpu_facts(),
                     "data": "scikit-learn digits, 32x32 PNG, 1,437 train / 360 test",
                     "budget_seconds": args.budget, "arms": {}}
    for name, extra in arms.items():
        run = work / f"run-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        arm = pretrain(data, run, args.budget, extra)
        result = selfsight.evaluate(run, data=data, full=False, progress=False)
        arm.update({k: result[k] for k in ("knn_k20", "knn_k200", "linear_top1",
                                           "pixels_knn_k20", "pixels_knn_k200", "precision")})
        summary["arms"][name] = arm
        print(f"{name:<9} {arm['images_per_sec']:>8.0f} img/s  {arm['steps']:>5} steps  kNN k20 "
              f"{arm['knn_k20']:.4f} (pixels {arm['pixels_knn_k20']:.4f})  k200 "
              f"{arm['knn_k200']:.4f} (pixels {arm['pixels_knn_k200']:.4f})  linear "
              f"{arm['linear_top1']:.4f}  peak {arm['peak_rss_mb']} MB  {'; '.join(arm['chosen'])}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"written to {OUT / 'summary.json'}")


if __name__ == "__main__":
    main()
