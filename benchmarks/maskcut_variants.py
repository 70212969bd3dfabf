"""MaskCut variants on the patch features of ``segment_scenes.py``'s runs (issue 6).

For each backbone (the untrained ViT, each pretrained run, and the oracle features made from the
true masks), the patch features of the test scenes are extracted once and cut with each variant:
MaskCut as published (CutLER's settings) and with the two options for touching objects
(``MaskCutConfig.exclude_found`` and ``split_ncut``). Pseudo-mask AP / AP50 / AR@10 with
pycocotools, as in ``segment_scenes.py``.

    python benchmarks/maskcut_variants.py --run benchmarks/results/segment_scenes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from selfsight.backbones import load_backbone
from selfsight.data.scenes import read_coco
from selfsight.segment import MaskCutConfig, extract_patch_features

sys.path.insert(0, str(Path(__file__).parent))
from segment_scenes import cut_variants, oracle_features, untrained_vit


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="benchmarks/results/segment_scenes",
                   help="a segment_scenes.py output folder (scenes/test and one folder per run)")
    p.add_argument("--methods", nargs="+", default=["dino", "mae", "simclr"])
    p.add_argument("--test-scenes", type=int, default=500, help="the first N test scenes")
    p.add_argument("--feature-size", type=int, default=128)
    p.add_argument("--radius", type=int, default=4)
    p.add_argument("--out", default=None, help="JSON file (default RUN/maskcut_variants.json)")
    return p.parse_args()


def report(name: str, results: dict) -> None:
    for label, r in results.items():
        ap = r["pseudo_masks"]
        print(f"  {name:<10} {label:<40} AP {ap['AP']:.3f}  AP50 {ap['AP50']:.3f}  "
              f"AR@10 {ap['AR10']:.3f}  masks/image {r['masks_per_image']:.2f}", flush=True)


def main() -> None:
    args = parse()
    run = Path(args.run)
    images, masks, _ = read_coco(run / "scenes" / "test")
    images, masks = images[:args.test_scenes], masks[:args.test_scenes]
    table = {"command": " ".join(sys.argv), "test_scenes": len(images), "features": {}}
    for name in ["untrained", *args.methods, "oracle"]:
        start = time.time()
        print(name, flush=True)
        if name == "oracle":
            features = oracle_features(masks, args.feature_size // 8)
        else:
            backbone = untrained_vit() if name == "untrained" else load_backbone(run / name)
            features = extract_patch_features(backbone, images, args.feature_size, "keys")
        table["features"][name] = cut_variants(features, masks, images, MaskCutConfig(),
                                               args.radius)
        report(name, table["features"][name])
        table["features"][name]["seconds"] = round(time.time() - start, 1)
    out = Path(args.out) if args.out else run / "maskcut_variants.json"
    out.write_text(json.dumps(table, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
