"""Unsupervised instance segmentation on Fashion-MNIST scenes (issue 6, CutLER's recipe).

Stages (each writes under --out and is skipped when its output exists, so a killed run resumes):
1. scenes:    train / test scenes with exact masks, COCO format (selfsight.data.scenes).
2. pretrain:  DINO, MAE and SimCLR on the train scenes' images, the same ViT, the same
              wall-clock budget, run at the same time with one thread each (PROTOCOL.md).
3. features:  per method (and an untrained ViT): instance-ness AUROC on the test scenes and
              MaskCut pseudo-mask AP / AP50 / AR@10 (pycocotools, class-agnostic); and the same
              cuts on "oracle" features made from the true masks: what MaskCut can reach.
4. segmenter: Mask R-CNN trained on the best method's pseudo-masks of the train scenes with
              DropLoss and one round of self-training; AP on the test scenes against the same
              method's pseudo-masks on the test scenes.
Overlay pictures (ground truth | pseudo-masks | segmenter) go to OUT/SEGMENTER_NAME/overlays.png.

    python benchmarks/segment_scenes.py --budget 1500
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from selfsight.backbones import Backbone, BackboneConfig, load_backbone
from selfsight.cli import key_values
from selfsight.config import config_from_dict
from selfsight.data.scenes import make_scenes, read_coco, write_coco
from selfsight.segment import (
    MaskCutConfig,
    PseudoMaskConfig,
    SegmenterConfig,
    extract_patch_features,
    instanceness,
    mask_ap,
    pseudo_masks,
)
from selfsight.segment.ncut import maskcut
from selfsight.segment.overlay import draw_instances, save_panel
from selfsight.segment.refine import upsample_masks
from selfsight.segment.segmenter import (
    predict,
    save_segmenter,
    train_with_self_training,
)

ROOT = Path(__file__).resolve().parent
METHODS = {  # method -> its options for a 6-block ViT-Tiny on 64-px views of 96-px scenes
    # DINO: the small-image ViT recipe (recipes.py, BENCHMARKS section 7), which 96-px images
    # do not get by their size: with the paper's teacher temperature the loss stays at ln 4096.
    "dino": [f"--set={option}" for option in (
        "out_dim=4096", "hidden_dim=1024", "ema_momentum=0.99", "ema_momentum_end=0.99",
        "teacher_temp=0.04", "head_batch_norm=true", "final_lr_ratio=1.0",
        "freeze_last_layer=3.0")],
    "mae": ["--set", "lr=1e-3", "--set", "decoder_dim=128", "--set", "decoder_depth=2",
            "--set", "decoder_heads=4"],
    "simclr": ["--set", "optimizer=adamw", "--set", "lr=5e-4", "--set", "weight_decay=0.05"],
}
BACKBONE = ["--backbone", "vit_tiny_patch16_224", "--backbone-set", "patch_size=8",
            "--backbone-set", "depth=6", "--image-size", "96", "--view-size", "64"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(ROOT / "results" / "segment_scenes"))
    p.add_argument("--train-scenes", type=int, default=4000)
    p.add_argument("--test-scenes", type=int, default=500)
    p.add_argument("--budget", type=float, default=1500, help="pretraining seconds per method")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--feature-size", type=int, default=128, help="96-px scenes are resized to "
                   "this for patch features (128: a 16x16 grid of 8-px patches)")
    p.add_argument("--masks", type=int, default=3, help="MaskCut cuts per image")
    p.add_argument("--tau", type=float, default=0.15)
    p.add_argument("--maskcut-set", action="append", metavar="KEY=VALUE",
                   help="other MaskCutConfig option, e.g. --maskcut-set split_sigma=0.1")
    p.add_argument("--radius", type=int, default=4, help="guided-filter radius (px)")
    p.add_argument("--segmenter-steps", type=int, default=1500)
    p.add_argument("--segmenter-budget", type=float, default=None, help="seconds per round")
    p.add_argument("--segmenter-method", default=None, help="default: best pseudo-mask AP50; "
                   "'untrained': the untrained ViT's pseudo-masks")
    p.add_argument("--features-name", default="features", help="output folder of the features "
                   "stage under --out (another for other --maskcut-set options)")
    p.add_argument("--segmenter-name", default="segmenter", help="output folder under --out")
    p.add_argument("--segmenter-train-scenes", type=int, default=None,
                   help="train the segmenter on the first N training scenes (default: all)")
    p.add_argument("--self-training-rounds", type=int, default=1)
    p.add_argument("--stages", nargs="+", default=["scenes", "pretrain", "features", "segmenter"])
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args()


def stage_scenes(out: Path, args: argparse.Namespace) -> None:
    for split, n in (("train", args.train_scenes), ("test", args.test_scenes)):
        if not (out / "scenes" / split / "annotations.json").is_file():
            write_coco(make_scenes(n, split, seed=0), out / "scenes" / split)
            print(f"wrote {n} {split} scenes")


def stage_pretrain(out: Path, args: argparse.Namespace) -> None:
    """All methods at once, one thread each: the same machine share for the same wall clock."""
    jobs = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for method in args.methods:
        if (out / method / "backbone.safetensors").is_file():
            continue
        resume = ["--resume"] if (out / method / "checkpoints").is_dir() else []
        cmd = [sys.executable, "-m", "selfsight.cli", "pretrain",
               str(out / "scenes" / "train" / "images"), "--method", method, *BACKBONE,
               *METHODS[method], "--time-budget", str(args.budget), "--batch-size",
               str(args.batch_size), "--out", str(out / method), "--no-progress", *resume]
        print(" ".join(cmd))
        log = (out / f"{method}.log").open("a")
        jobs[method] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    for method, job in jobs.items():
        if job.wait():
            raise SystemExit(f"pretraining {method} failed: see {out / method}.log")


def untrained_vit() -> Backbone:
    torch.manual_seed(0)
    return Backbone(BackboneConfig("vit_tiny_patch16_224", in_chans=1, image_size=96,
                                   patch_size=8, model_kwargs={"depth": 6},
                                   mean=(0.5,), std=(0.25,))).eval()


def oracle_features(masks: list[np.ndarray], grid: int, seed: int = 0) -> torch.Tensor:
    """A ceiling for MaskCut: per patch, the fraction of it each true instance (and the
    background) covers, one channel each, plus a little noise: (N, 1 + max K, grid, grid)."""
    generator = torch.Generator().manual_seed(seed)
    width = 1 + max(len(m) for m in masks)
    out = torch.zeros(len(masks), width, grid, grid)
    for i, m in enumerate(masks):
        cover = torch.nn.functional.adaptive_avg_pool2d(
            torch.from_numpy(m).float()[None], (grid, grid))[0]  # (K, grid, grid)
        out[i, 0] = 1 - cover.sum(0)
        out[i, 1:1 + len(m)] = cover
    return out + 0.05 * torch.randn(out.shape, generator=generator)


# All of MaskCut's options for touching objects, as chosen on validation scenes (BENCHMARKS
# section 7); ``maskcut_variants`` adds them to CutLER's settings one at a time.
SPATIAL_SPLIT = dict(exclude_found=True, split_ncut=0.45, split_sigma=0.1, center=True,
                     n_masks=5)


def maskcut_variants(base: MaskCutConfig) -> dict[str, MaskCutConfig]:
    """MaskCut as configured (``base``), and CutLER's MaskCut (base's tau) with the options that
    target touching objects added one by one: found patches out of later cuts; a recursive
    split, 5 masks; the split's graph weighted by proximity, features centred."""
    cutler = MaskCutConfig(tau=base.tau)
    variants = {"maskcut": base,
                "cutler": cutler,
                "exclude_found": replace(cutler, exclude_found=True),
                "exclude_found+split_ncut=0.5, 5 masks": replace(
                    cutler, exclude_found=True, split_ncut=0.5, n_masks=5),
                "+split_sigma=0.1, split_ncut=0.45": replace(
                    cutler, **{**SPATIAL_SPLIT, "center": False}),
                "+center (all options)": replace(cutler, **SPATIAL_SPLIT)}
    return {label: config for label, config in variants.items()  # each config once
            if label == "maskcut" or config != base}


def cut_variants(features: torch.Tensor, masks: list[np.ndarray], images: np.ndarray,
                 base: MaskCutConfig, radius: int) -> dict:
    """Pseudo-mask AP of each of ``maskcut_variants(base)`` on these patch features; masks are
    upsampled and refined as in ``pseudo_masks`` and scored by the rank they were found in."""
    out = {}
    for label, config in maskcut_variants(base).items():
        pseudo = [upsample_masks(m, image.shape[:2], image, True, radius)
                  for m, image in zip(maskcut(features, config), images)]
        out[label] = {"pseudo_masks": mask_ap(masks, pseudo, [
            1 / np.arange(1, len(p) + 1) for p in pseudo]),
            "masks_per_image": float(np.mean([len(m) for m in pseudo]))}
    return out


def oracle_ceiling(masks: list[np.ndarray], images: np.ndarray, args: argparse.Namespace
                   ) -> dict:
    """MaskCut and its variants on oracle features: what the cut can reach."""
    features = oracle_features(masks, args.feature_size // 8)
    out = cut_variants(features, masks, images, mask_config(args).maskcut, args.radius)
    return {**out["maskcut"], "variants": out}


def mask_config(args: argparse.Namespace) -> PseudoMaskConfig:
    options = {"n_masks": args.masks, "tau": args.tau,
               **key_values(args.maskcut_set, "--maskcut-set")}
    return PseudoMaskConfig(size=args.feature_size, radius=args.radius,
                            maskcut=config_from_dict(MaskCutConfig, options, "maskcut"))


def fashion_mnist_knn(backbone: Backbone, bank: int = 10_000, queries: int = 2_000) -> float:
    """kNN (k=200, T=0.1) on Fashion-MNIST items at the backbone's size (seeded subsets of the
    training and test splits): did the features learn, against the untrained ViT's figure?"""
    from selfsight.data import load_images
    from selfsight.eval import extract_features, knn_accuracy

    rng = np.random.default_rng(0)
    sets = []
    for split, n in (("train", bank), ("test", queries)):
        data = load_images("fashion-mnist", split=split, size=backbone.config.image_size,
                           progress=False)
        pick = np.sort(rng.permutation(len(data))[:n])
        sets.append((extract_features(backbone, data.images[pick], progress=False),
                     torch.tensor(data.labels[pick])))
    (bank_f, bank_y), (test_f, test_y) = sets
    return round(knn_accuracy(bank_f, bank_y, test_f, test_y, ks=(200,))["knn_k200"], 4)


def run_stats(run: Path) -> dict:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    last = [x for x in lines if "images_seen" in x][-1]
    return {"images_seen": last["images_seen"], "elapsed_s": round(last["elapsed"], 1),
            "epochs": last.get("epoch"), "final_loss": last.get("loss")}


def stage_features(out: Path, args: argparse.Namespace, test: tuple) -> dict:
    images, masks, classes = test
    results = {}
    for name in ["untrained", *args.methods, "oracle"]:
        path = out / args.features_name / f"{name}.json"
        if path.is_file():
            results[name] = json.loads(path.read_text())
            continue
        if name == "oracle":  # the same cuts on ground-truth instance features
            results[name] = oracle_ceiling(masks, images, args)
            path.write_text(json.dumps(results[name], indent=2))
            continue
        backbone = untrained_vit() if name == "untrained" else load_backbone(out / name)
        start = time.time()
        inst = {kind: instanceness(extract_patch_features(backbone, images, args.feature_size,
                                                          kind), masks, classes)
                for kind in ("keys", "tokens")}  # MaskCut below uses the keys
        pseudo, scores = pseudo_masks(backbone, images, mask_config(args))
        result = {"instanceness": inst, "pseudo_masks": mask_ap(masks, pseudo, scores),
                  "masks_per_image": float(np.mean([len(m) for m in pseudo])),
                  "seconds": round(time.time() - start, 1),
                  "fashion_mnist_knn_k200": fashion_mnist_knn(backbone),
                  "pretraining": None if name == "untrained" else run_stats(out / name)}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
        np.savez_compressed(out / args.features_name / f"{name}_test_masks.npz",
                            *[np.packbits(m) for m in pseudo])
        results[name] = result
        print(name, json.dumps(result))
    return results


def stage_segmenter(out: Path, args: argparse.Namespace, test: tuple, features: dict) -> dict:
    method = args.segmenter_method or max(  # the best learned features, not the oracle
        args.methods, key=lambda m: features[m]["pseudo_masks"]["AP50"])
    path = out / args.segmenter_name / "result.json"
    if path.is_file():
        return json.loads(path.read_text())
    backbone = untrained_vit() if method == "untrained" else load_backbone(out / method)
    train_images, _, _ = read_coco(out / "scenes" / "train")
    train_images = train_images[:args.segmenter_train_scenes]
    train_pseudo, _ = pseudo_masks(backbone, train_images, mask_config(args))
    config = SegmenterConfig(image_size=train_images.shape[1], steps=args.segmenter_steps,
                             time_budget=args.segmenter_budget,
                             self_training_rounds=args.self_training_rounds)
    start = time.time()
    model, history = train_with_self_training(train_images, train_pseudo, config)
    seconds = time.time() - start
    save_segmenter(model, config, out / args.segmenter_name)
    images, masks, _ = test
    predictions = predict(model, images)
    pseudo, scores = pseudo_masks(backbone, images, mask_config(args))
    result = {"features_from": method, "config": asdict(config), "train_seconds": seconds,
              "self_training_rounds": args.self_training_rounds,
              "history": history,
              "segmenter": mask_ap(masks, [p["masks"] for p in predictions],
                                   [p["scores"] for p in predictions]),
              "pseudo_masks": mask_ap(masks, pseudo, scores)}
    path.write_text(json.dumps(result, indent=2))
    picks = range(0, 48, 4)
    save_panel(out / args.segmenter_name / "overlays.png", [
        [draw_instances(images[i], masks[i]) for i in picks],
        [draw_instances(images[i], pseudo[i]) for i in picks],
        [draw_instances(images[i], predictions[i]["masks"][predictions[i]["scores"] >= 0.5])
         for i in picks]])
    return result


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if "scenes" in args.stages:
        stage_scenes(out, args)
    if "pretrain" in args.stages:
        stage_pretrain(out, args)
    test = read_coco(out / "scenes" / "test")
    features = stage_features(out, args, test) if "features" in args.stages else {}
    print(f"\n{'features':<10} {'inst same-cat':>13} {'inst bg':>8} {'AP':>6} {'AP50':>6} "
          f"{'AR@10':>6} {'masks/img':>9}")
    for name, r in features.items():
        no_pairs = dict.fromkeys(("same_category", "background"), np.nan)  # oracle: not measured
        i = r.get("instanceness", {}).get("keys", no_pairs)
        a = r["pseudo_masks"]
        print(f"{name:<10} {i['same_category']:>13.3f} {i['background']:>8.3f} {a['AP']:>6.3f} "
              f"{a['AP50']:>6.3f} {a['AR10']:>6.3f} {r['masks_per_image']:>9.2f}")
    summary = {"args": vars(args), "features": features}
    if "segmenter" in args.stages:
        seg = stage_segmenter(out, args, test, features)
        summary["segmenter"] = seg
        s, p = seg["segmenter"], seg["pseudo_masks"]
        print(f"\nsegmenter on {seg['features_from']} pseudo-masks: AP {s['AP']:.3f} AP50 "
              f"{s['AP50']:.3f} AR@10 {s['AR10']:.3f}  (pseudo-masks: AP {p['AP']:.3f} AP50 "
              f"{p['AP50']:.3f} AR@10 {p['AR10']:.3f})")
    (out / "results.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
