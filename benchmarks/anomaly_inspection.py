"""Small defects on large real photographs: whole images downscaled vs tiles at full resolution.

The data (``selfsight.data.inspection``): "parts" cut from scikit-learn's two sample photographs
(china.jpg, flower.jpg), 768x768 by default, in MVTec AD's layout; test parts carry one small
defect each (scratch, spot, crack, missing piece, stain; 0.02-1% of the image) with an exact
mask. Everything runs through the CLI as a user would:

    selfsight pretrain DATA/train/good --time-budget B
    selfsight anomaly fit RUN DATA/train/good [--set tile=0]
    selfsight anomaly score RUN/anomaly DATA/test --overlays 0

Image AUROC comes from scores.json; pixel AUROC and AUPRO (FPR <= 0.3) from the maps that
``AnomalyModel.score(..., maps=True)`` gives (the whole-image arm's maps, at the backbone's input
size, are resized bilinearly to the image's size). Arms: (a) whole images (``--set tile=0``) vs
(b) tiles at full resolution (the default, ``tile=auto``); features of (1) the pretrained run
vs (2) the same backbone untrained. Scoring time per image is that of the API call (maps
included, model loading and decoding not), at the precision the CLI ran at. Where this
selfsight has no tiling (``AnomalyConfig`` without ``tile``), only arm (a) runs and the summary
says so.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/anomaly_inspection.py --budget 120

``--tile 64 --fit-set image_size=128`` runs the tiled arm on 64-px tiles read at 128 px (a feature
cell then covers a quarter of the pixels); ``--reuse`` keeps the pretrained run of an earlier call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from selfsight.anomaly import AnomalyConfig, AnomalyModel, image_auroc, pixel_auroc, pro_auc
from selfsight.backbones import Backbone, load_backbone
from selfsight.data.inspection import INSPECTION_KINDS, make_inspection_set
from selfsight.device import computing_at, cpu_facts

HERE = Path(__file__).parent
OUT = HERE / "results" / "anomaly_inspection"
CLI = [sys.executable, "-m", "selfsight.cli"]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=120, help="pretraining seconds")
    p.add_argument("--size", default="768x768", help="HEIGHTxWIDTH of the parts")
    p.add_argument("--n-train", type=int, default=20)
    p.add_argument("--n-good-test", type=int, default=6)
    p.add_argument("--n-defect-test", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--pretrain-args", default="", help="extra `selfsight pretrain` options")
    p.add_argument("--fit-set", action="append", default=[],
                   help="extra `anomaly fit --set KEY=VALUE` for every arm")
    p.add_argument("--tile", default="auto",
                   help="the tiled arm's `--set tile=` (px of the image; auto: the default)")
    p.add_argument("--summary", default="summary.json",
                   help="the summary's file name inside --out")
    p.add_argument("--reuse", action="store_true",
                   help="keep an existing pretrained run instead of training again")
    return p.parse_args()


def cli(args: list[str], log: Path) -> float:
    """Run one selfsight command; its output goes to ``log``; returns its wall seconds."""
    started = time.perf_counter()
    with log.open("a") as out:
        out.write("$ selfsight " + " ".join(args) + "\n")
        out.flush()
        done = subprocess.run([*CLI, *args, "--no-progress"], stdout=out, stderr=out,
                              check=False)
    if done.returncode:
        sys.exit(f"selfsight {' '.join(args)} failed ({done.returncode}); see {log}")
    return time.perf_counter() - started


def build_data(args: argparse.Namespace, root: Path) -> dict:
    height, width = (int(v) for v in args.size.lower().split("x"))
    wanted = {"size": [height, width], "seed": args.seed, "kinds": list(INSPECTION_KINDS)}
    counts = (args.n_train, args.n_good_test, args.n_defect_test)
    manifest_file = root / "manifest.json"
    if manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text())
        have = (len(manifest["train"]), sum(e["kind"] == "good" for e in manifest["test"]),
                sum(e["kind"] != "good" for e in manifest["test"]))
        if all(manifest[k] == v for k, v in wanted.items()) and have == counts:
            return manifest
        import shutil

        shutil.rmtree(root)  # another size or count: build again
    return make_inspection_set(root, *counts, size=(height, width), seed=args.seed)


def untrained_run(pretrained: Path, out: Path) -> Path:
    """The pretrained run's backbone, same config, random weights, saved as a run folder."""
    torch.manual_seed(0)
    Backbone(dataclasses.replace(load_backbone(pretrained).config)).save(out)
    return out


def full_size_maps(maps: list | np.ndarray, shapes: list[tuple[int, int]]) -> np.ndarray:
    """Each map resized (bilinear) to its image's (H, W); a map already that size is kept."""
    out = []
    for amap, (h, w) in zip(maps, shapes):
        amap = np.asarray(amap, dtype=np.float32)
        if amap.shape != (h, w):
            amap = np.asarray(Image.fromarray(amap, mode="F").resize((w, h), Image.BILINEAR))
        out.append(amap)
    return np.stack(out)


def evaluate_arm(run: Path, arm: str, tiles_available: bool, data: Path, manifest: dict,
                 args: argparse.Namespace, log: Path) -> dict:
    model_dir, scores_dir = run / f"anomaly_{arm}", run / f"scores_{arm}"
    sets = [f"--set={s}" for s in args.fit_set]
    if tiles_available:
        sets.append("--set=tile=0" if arm == "whole" else f"--set=tile={args.tile}")
    fit_s = cli(["anomaly", "fit", str(run), str(data / "train" / "good"), "--out",
                 str(model_dir), *sets], log)
    score_s = cli(["anomaly", "score", str(model_dir), str(data / "test"), "--out",
                   str(scores_dir), "--overlays", "0"], log)
    scores = json.loads((scores_dir / "scores.json").read_text())
    by_file = {}
    for row in scores["results"]:
        for entry in manifest["test"]:
            if row["file"].replace("\\", "/").endswith(entry["file"][len("test/"):]):
                by_file[entry["file"]] = row
    entries = manifest["test"]
    if len(by_file) != len(entries):
        sys.exit(f"scores.json names {len(by_file)} of the {len(entries)} test images")
    labels = np.array([e["kind"] != "good" for e in entries])
    image = np.array([by_file[e["file"]]["score"] for e in entries])
    patch = np.array([by_file[e["file"]]["patch_score"] for e in entries])
    pooled = np.array([by_file[e["file"]]["pooled_score"] for e in entries])
    per_kind = {}
    for kind in manifest["kinds"]:
        keep = np.array([e["kind"] in ("good", kind) for e in entries])
        if labels[keep].any():
            per_kind[kind] = round(image_auroc(labels[keep], image[keep]), 4)
    # Pixel maps through the Python API, on the same files at their own size.
    pictures = [np.asarray(Image.open(data / e["file"]).convert("RGB")) for e in entries]
    model = AnomalyModel.load(model_dir)
    with computing_at("auto", "cpu", announce=False):  # the precision the CLI ran at
        started = time.perf_counter()
        api = model.score(pictures, device="cpu", progress=False, maps=True)
        api_s = time.perf_counter() - started
    shapes = [p.shape[:2] for p in pictures]
    maps = full_size_maps(api["maps"], shapes)
    masks = np.stack([np.zeros(s, bool) if e["mask"] is None
                      else np.asarray(Image.open(data / e["mask"])) > 127
                      for e, s in zip(entries, shapes)])
    tile = int(getattr(model, "tile", 0))
    return {
        "tile": tile, "image_auroc": round(image_auroc(labels, image), 4),
        "image_auroc_patch": round(image_auroc(labels, patch), 4),
        "image_auroc_pooled": round(image_auroc(labels, pooled), 4),
        "image_auroc_per_kind": per_kind,
        "image_auroc_api": round(image_auroc(labels, np.asarray(api["image"])), 4),
        "pixel_auroc": round(pixel_auroc(masks, maps), 4),
        "aupro_0.3": round(pro_auc(masks, maps, 0.3), 4),
        "flagged_good": int(sum(by_file[e["file"]]["anomalous"] for e in entries
                                if e["kind"] == "good")),
        "flagged_defect": int(sum(by_file[e["file"]]["anomalous"] for e in entries
                                  if e["kind"] != "good")),
        "fit_seconds_cli": round(fit_s, 1), "score_seconds_cli": round(score_s, 1),
        "score_seconds_per_image": round(scores["seconds"] / len(entries), 3),
        "score_seconds_per_image_api": round(api_s / len(entries), 4),
        "precision": scores.get("precision"),
    }


def main() -> None:
    args = parse()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    manifest = build_data(args, data)
    log = out / "log.txt"
    log.write_text("")
    tiles_available = "tile" in {f.name for f in dataclasses.fields(AnomalyConfig)}
    arms = ["whole", "tiles"] if tiles_available else ["whole"]

    pretrained = out / "pretrained"
    pretrain_s = None
    if not (args.reuse and (pretrained / "backbone.safetensors").is_file()):
        if pretrained.exists():
            import shutil

            shutil.rmtree(pretrained)
        pretrain_s = cli(["pretrain", str(data / "train" / "good"), "--time-budget",
                          str(args.budget), "--out", str(pretrained),
                          *args.pretrain_args.split()], log)
    runs = {"pretrained": pretrained, "untrained": untrained_run(pretrained, out / "untrained")}
    backbone = load_backbone(pretrained).config
    metrics = (pretrained / "metrics.jsonl").read_text().splitlines()
    trained = json.loads(metrics[-1]) if metrics else {}

    results: dict = {}
    for features, run in runs.items():
        for arm in arms:
            results[f"{features}/{arm}"] = evaluate_arm(run, arm, tiles_available, data,
                                                        manifest, args, log)
            print(f"{features}/{arm}: {results[f'{features}/{arm}']}", flush=True)

    summary = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "data": {"size": manifest["size"], "seed": manifest["seed"], "kinds": manifest["kinds"],
                 "train_good": len(manifest["train"]),
                 "test_good": sum(e["kind"] == "good" for e in manifest["test"]),
                 "test_defect": sum(e["kind"] != "good" for e in manifest["test"]),
                 "defect_area_fraction": [min(e["area"] for e in manifest["test"]
                                              if e["mask"]),
                                          max(e["area"] for e in manifest["test"]
                                              if e["mask"])]},
        "pretrain": {"budget_seconds": args.budget, "wall_seconds": pretrain_s and
                     round(pretrain_s, 1), "backbone": backbone.name,
                     "image_size": backbone.image_size, "extra_args": args.pretrain_args,
                     "steps": trained.get("step"), "epochs": trained.get("epoch"),
                     "train_seconds": trained.get("elapsed")},
        "tiles_available": tiles_available,
        "note": None if tiles_available else
        "AnomalyConfig has no `tile` here: only arm (a), whole images, was run",
        "cpu": cpu_facts(), "torch": torch.__version__,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "arms": results,
    }
    (out / args.summary).write_text(json.dumps(summary, indent=1))
    print(table(summary))


def table(summary: dict) -> str:
    lines = ["| features | arm | tile px | image AUROC: score (patch / pooled) | pixel AUROC | "
             "AUPRO (0.3) | flagged good / defect | fit s (CLI) | score ms/image |",
             "|---|---|---|---|---|---|---|---|---|"]
    data = summary["data"]
    for key, r in summary["arms"].items():
        features, arm = key.split("/")
        lines.append(
            f"| {features} | {arm} | {r['tile'] or '-'} | {100 * r['image_auroc']:.1f} "
            f"({100 * r['image_auroc_patch']:.1f} / {100 * r['image_auroc_pooled']:.1f}) | "
            f"{100 * r['pixel_auroc']:.1f} | {100 * r['aupro_0.3']:.1f} | "
            f"{r['flagged_good']}/{data['test_good']} / {r['flagged_defect']}/"
            f"{data['test_defect']} | {r['fit_seconds_cli']} | "
            f"{1000 * r['score_seconds_per_image_api']:.0f} |")
    if summary["note"]:
        lines.append(summary["note"])
    return "\n".join(lines)


if __name__ == "__main__":
    main()
