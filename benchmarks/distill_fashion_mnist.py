"""Distil a pretrained Fashion-MNIST run into a student >= 4x faster on CPU, and compare them.

Teacher: ``--teacher`` (default the 30-minute SimCLR run if it has finished, else the methods
benchmark's SimCLR run). Student: by default a ResNet with one block per stage at a quarter of
the teacher's widths (16-128 channels), the teacher's 3x3 stride-2 stem and 20-px input. Both are
exported to ONNX (parity with PyTorch on real images, must be <= 1e-4) and timed on the CPU at
batch 1 and 256 (PyTorch eager fp32 and onnxruntime, ms per image, median after warm-up), then
evaluated with ``selfsight.evaluate`` (weighted kNN k=20/200, T=0.1; linear probe).
Target: student kNN within 2 points of the teacher at >= 4x lower CPU latency.

    python benchmarks/distill_fashion_mnist.py --budget 600
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import selfsight
from selfsight.backbones import load_backbone
from selfsight.cli import key_values

RESULTS = Path("benchmarks/results")
TEACHERS = (RESULTS / "simclr_30min/selfsight", RESULTS / "methods_fashion_mnist/simclr/selfsight")
STUDENT_SET = ["channels=16,32,64,128", "layers=1,1,1,1"]


def default_teacher() -> str:
    for run in TEACHERS:
        if (run / "backbone.safetensors").is_file():
            return str(run)
    return str(TEACHERS[-1])


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default=default_teacher())
    p.add_argument("--student", default="resnet18")
    p.add_argument("--student-set", nargs="*", default=STUDENT_SET, metavar="KEY=VALUE")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="distillation options, e.g. lr=0.005 loss=smooth_l1 grid_weight=0.5")
    p.add_argument("--budget", type=float, default=600, help="seconds of distillation")
    p.add_argument("--max-steps", type=int, default=None, help="for a quick check")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the latency timings")
    p.add_argument("--no-linear", action="store_true", help="kNN only (faster check)")
    p.add_argument("--out", default=str(RESULTS / "distill_fashion_mnist"))
    return p.parse_args()


def copy_run(run: Path, to: Path) -> Path:
    """Evaluate and export a copy, so the teacher's own folder is never written to."""
    to.mkdir(parents=True, exist_ok=True)
    for name in ("backbone.json", "backbone.safetensors", "config.yaml"):
        if (run / name).is_file():
            shutil.copy2(run / name, to / name)
    return to


def evaluate(run: Path, linear: bool) -> dict:
    quick = {"full": False} if "full" in inspect.signature(selfsight.evaluate).parameters else {}
    r = selfsight.evaluate(run, linear=linear, pixels=False, progress=False, device="cpu",
                           **quick)
    return {k: r[k] for k in ("knn_k20", "knn_k200", "linear_top1") if k in r}


def export(run: Path, threads: int) -> dict:
    """ONNX parity and CPU latency (PyTorch and onnxruntime) at batch 1 and 256."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        r = selfsight.export_onnx(run, latency_batches=(1, 256), threads=threads)
    finally:
        torch.set_num_threads(before)
    return {"parity_max_abs_diff": r["parity"]["max"], "parity_passed": r["parity"]["passed"],
            "parity_inputs": r["parity"]["inputs"], **r["latency_ms_per_image"]}


def describe(run: Path) -> dict:
    backbone = load_backbone(run)
    return {"backbone": backbone.config.name, "model_kwargs": backbone.config.model_kwargs,
            "params": sum(p.numel() for p in backbone.parameters()), "dim": backbone.dim}


def plot(student: Path, rows: dict, path: Path) -> None:
    metrics = [json.loads(line) for line in (student / "metrics.jsonl").read_text().splitlines()]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot([m["elapsed"] for m in metrics], [m["loss"] for m in metrics])
    a.set(xlabel="seconds", ylabel="distillation loss", title="student training")
    names = list(rows)
    for i, (engine, batch) in enumerate([("pytorch", "1"), ("onnxruntime", "1"),
                                         ("pytorch", "256"), ("onnxruntime", "256")]):
        b.bar([j + 0.2 * i for j in range(len(names))],
              [rows[n]["latency"][engine][batch] for n in names], width=0.2,
              label=f"{engine} b{batch}")
    b.set_xticks([j + 0.3 for j in range(len(names))], names)
    b.set(ylabel="ms per image (CPU)", yscale="log", title="latency")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: dict) -> str:
    head = (f"{'':<9}{'params':>9}{'kNN k=20':>10}{'kNN k=200':>11}{'linear':>8}"
            f"{'torch b1':>10}{'ort b1':>9}{'torch b256':>12}{'ort b256':>10}{'parity':>10}")
    lines = [head, "(latency: CPU ms per image)"]
    for name, r in rows.items():
        lat, acc = r["latency"], r["accuracy"]
        lines.append(
            f"{name:<9}{r['params']:>9,}{acc['knn_k20']:>10.4f}{acc['knn_k200']:>11.4f}"
            f"{acc.get('linear_top1', float('nan')):>8.4f}{lat['pytorch']['1']:>10.3f}"
            f"{lat['onnxruntime']['1']:>9.3f}{lat['pytorch']['256']:>12.4f}"
            f"{lat['onnxruntime']['256']:>10.4f}{r['parity_max_abs_diff']:>10.1e}")
    return "\n".join(lines)


def main() -> None:
    args = parse()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = copy_run(Path(args.teacher), out / "teacher")
    shutil.rmtree(out / "student", ignore_errors=True)  # a fresh student every time
    started = time.perf_counter()
    student = selfsight.distill(
        teacher, args.student, out / "student", data="fashion-mnist",
        batch_size=args.batch_size, student_options=key_values(args.student_set, "--student-set"),
        options=key_values(args.set, "--set"), time_budget=args.budget, max_steps=args.max_steps)
    distill_seconds = time.perf_counter() - started
    rows = {}
    for name, run in (("teacher", teacher), ("student", student)):
        exported = export(run, args.threads)
        rows[name] = {**describe(run), "run": str(run),
                      "latency": {k: exported[k] for k in ("onnxruntime", "pytorch")},
                      **{k: v for k, v in exported.items() if k.startswith("parity")},
                      "accuracy": evaluate(run, not args.no_linear)}
    t, s = rows["teacher"], rows["student"]
    speedup = {f"{engine}_b{b}": t["latency"][engine][b] / s["latency"][engine][b]
               for engine in ("pytorch", "onnxruntime") for b in ("1", "256")}
    knn_gap = {k: t["accuracy"][k] - s["accuracy"][k] for k in ("knn_k20", "knn_k200")}
    result = {
        "command": " ".join(sys.argv), "teacher": args.teacher, "budget_seconds": args.budget,
        "distill_wall_seconds": round(distill_seconds, 1), "batch_size": args.batch_size,
        "latency_threads": args.threads, "device": "cpu",
        "student_options": key_values(args.student_set, "--student-set"),
        "distill_options": key_values(args.set, "--set"),
        "rows": rows, "speedup": speedup, "knn_gap_points": {k: 100 * v
                                                              for k, v in knn_gap.items()},
        "target_met": all(v <= 0.02 for v in knn_gap.values()) and min(speedup.values()) >= 4,
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    plot(student, rows, out / "distill.png")
    print(table(rows))
    print("speedup (teacher / student latency): "
          + ", ".join(f"{k} {v:.1f}x" for k, v in speedup.items()))
    print("kNN gap (teacher - student, points): "
          + ", ".join(f"{k} {100 * v:+.2f}" for k, v in knn_gap.items()))
    print(f"target (gap <= 2 points, >= 4x faster) met: {result['target_met']}")
    print(f"written: {out / 'result.json'}, {out / 'distill.png'}")


if __name__ == "__main__":
    main()
