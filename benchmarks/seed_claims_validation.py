"""Learning rate and temperature of the seed-claims arms, checked on a validation split of
Fashion-MNIST's training set (the test set is never looked at), the same effort for every arm.

The 60,000 training images are split once (seed 0) into 50,000 to pretrain on and 10,000 to
validate with. Each arm of ``seed_claims.py`` trains ``--epochs`` epochs as it runs there, at
half and twice its learning rate, and at half and twice its temperature (one change at a time);
the arms that do not get SimCLR's small-image recipe also try it. The score is kNN (k=200,
cosine, T=0.1) of the 10,000 validation images against the 50,000 with their labels. A short
horizon favours settings that learn fast, so this checks that the defaults are not far off; it
does not tune for 50 epochs. Finished runs are kept.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/seed_claims_validation.py --epochs 6
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
from selfsight.backbones import load_backbone
from selfsight.cli import key_values
from selfsight.data.fashion_mnist import load_fashion_mnist
from selfsight.device import cpu_facts
from selfsight.eval.extract import extract_features
from selfsight.eval.knn import knn_accuracy

sys.path.insert(0, str(Path(__file__).parent))
from seed_claims import ARMS  # the arms' methods and options, one definition

OUT = Path(__file__).parent / "results" / "seed_claims_validation"
VALIDATION = 10_000
# Per arm: the options that name its learning rate and temperature, and their values in the
# arm as seed_claims.py runs it (SimCLR's small-image recipe: lr 1.5, temperature 0.1).
SETTINGS = {
    "simclr": ("lr", 1.5, "temperature", 0.1),
    "hierarchical": ("lr", 1.0, "temperatures", 0.2),
    "globallocal": ("lr", 0.3, "temperature", 1.0),
}
TEMPERATURE_FACTORS = (0.5, 2.0)  # sharper, softer
# SimCLR's small-image recipe (recipes.py) for the arms that do not get it: its weight decay,
# and for the hierarchical method, whose levels are NT-Xent heads like SimCLR's, all of it.
SIMCLR_RECIPE = {
    "hierarchical": ("SimCLR's recipe", ["lr=1.5", "temperatures=(0.1,0.1,0.1,0.1)",
                                         "weight_decay=0.0001", "proj_hidden_dim=512"]),
    "globallocal": ("wd 1e-4", ["weight_decay=0.0001"]),
}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--arms", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--variants", nargs="+", help="only these variants (labels), e.g. default")
    p.add_argument("--out", default=str(OUT))
    return p.parse_args()


def setting(arm: str, key: str, value: float) -> str:
    return f"{key}=({','.join([str(value)] * 4)})" if key == "temperatures" else f"{key}={value}"


def variants(arm: str) -> list[tuple[str, list[str]]]:
    """(label, options): the arm as seed_claims.py runs it, then one change at a time."""
    lr_key, lr, t_key, temperature = SETTINGS[arm]
    base = [o for o in ARMS[arm][1] if not o.startswith(f"{t_key}=")]
    out = [("default", [setting(arm, lr_key, lr), setting(arm, t_key, temperature)]),
           *[(f"lr x{f}", [setting(arm, lr_key, lr * f), setting(arm, t_key, temperature)])
             for f in (0.5, 2.0)],
           *[(f"T x{f}", [setting(arm, lr_key, lr), setting(arm, t_key, round(temperature * f, 4))])
             for f in TEMPERATURE_FACTORS]]
    if arm in SIMCLR_RECIPE:
        label, options = SIMCLR_RECIPE[arm]
        keys = {o.split("=")[0] for o in options}
        out.append((label, [*[o for o in out[0][1] if o.split("=")[0] not in keys], *options]))
    return [(label, [*base, *options]) for label, options in out]


def split() -> tuple[object, object]:
    train = load_fashion_mnist("train")
    order = np.random.default_rng(0).permutation(len(train))
    return train.subset(np.sort(order[VALIDATION:])), train.subset(np.sort(order[:VALIDATION]))


def run_variant(args: argparse.Namespace, arm: str, label: str, options: list[str],
                fit, validation, out: Path) -> dict:
    name = "".join(c if c.isalnum() else "_" for c in label)
    result_file = out / arm / f"{name}.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    run = out / arm / name
    if run.exists():  # an interrupted run: train it again from the start
        import shutil

        shutil.rmtree(run)
    method, _, importance = ARMS[arm]
    print(f"{arm} {label}: {method} {options}", flush=True)
    start = time.process_time()
    selfsight.pretrain(fit, method, out=run, epochs=args.epochs, seed=0,
                       options=key_values(options, "--set"), importance=importance,
                       progress=False)
    seconds = time.process_time() - start
    backbone = load_backbone(run)
    bank = extract_features(backbone, fit.images, progress=False)
    queries = extract_features(backbone, validation.images, progress=False)
    scores = knn_accuracy(bank, torch.from_numpy(fit.labels), queries,
                          torch.from_numpy(validation.labels), ks=(200,))
    last = [json.loads(line) for line in (run / "metrics.jsonl").open()][-1]
    result = {"arm": arm, "variant": label, "options": options, "epochs": args.epochs,
              "cpu_seconds": round(seconds, 1),
              "final_loss": last["loss"], "validation_knn_k200": round(scores["knn_k200"], 4)}
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(result, indent=1))
    print(f"  validation kNN {result['validation_knn_k200']:.4f}", flush=True)
    return result


def main() -> None:
    args = parse()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fit, validation = split()
    arms = {}
    for arm in args.arms:
        chosen = [v for v in variants(arm) if not args.variants or v[0] in args.variants]
        runs = [run_variant(args, arm, *v, fit, validation, out) for v in chosen]
        best = max(runs, key=lambda r: r["validation_knn_k200"])
        arms[arm] = {"runs": runs, "best": best["variant"],
                     "default_gap": round(best["validation_knn_k200"]
                                          - runs[0]["validation_knn_k200"], 4)}
    summary = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
               "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
               "cpu": cpu_facts(), "threads": torch.get_num_threads(), "epochs": args.epochs,
               "fit_images": len(fit), "validation_images": len(validation), "arms": arms}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{'arm':<14} {'variant':<16} {'val kNN':>8}  options")
    for arm, a in arms.items():
        for r in a["runs"]:
            mark = " <- best" if r["variant"] == a["best"] else ""
            print(f"{arm:<14} {r['variant']:<16} {r['validation_knn_k200']:>8.4f}  "
                  f"{' '.join(r['options'])}{mark}")
    print(f"written to {out / 'summary.json'}")


if __name__ == "__main__":
    main()
