"""``selfsight`` command line: parse, call one public function, say where results went."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from selfsight.config import PRECISIONS, parse_value
from selfsight.errors import RunInterrupted

if TYPE_CHECKING:  # the CLI imports torch-heavy modules only when a command runs
    from selfsight.eval.label_efficiency import FinetuneRecipe

PRECISION_HELP = ("auto (default): bf16 where the hardware runs it natively (a CUDA GPU with "
                  "bf16, a CPU with AVX-512 BF16 or AMX), fp16 mixed on other CUDA GPUs, "
                  "fp32 otherwise")

# embed and predict read every image of a source (data.load_every_image)
EVERY_IMAGE_HELP = ("image folder (searched recursively) or 'fashion-mnist' (both splits, "
                    "training first)")


def key_values(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} expects key=value, got '{pair}'")
        out[key.replace("-", "_")] = parse_value(value)
    return out


def add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain a backbone on unlabeled images")
    p.add_argument("data", nargs="?", default="fashion-mnist",
                   help="'fashion-mnist' or an image folder (searched recursively)")
    p.add_argument("--method", default="simclr", help="see `selfsight list methods`")
    p.add_argument("--backbone", default="auto",
                   help="any timm model name or selfsight alias (`selfsight list backbones`); "
                        "auto: resnet10_cpu on a CPU, resnet18 on a GPU")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=None,
                   help="global batch size (default: 512 on a CPU, 256 on a GPU, smaller for "
                        "small folders)")
    p.add_argument("--out", default=None, help="run folder (default runs/METHOD-BACKBONE-TIME)")
    p.add_argument("--image-size", type=int, default=None, help="inference resolution")
    p.add_argument("--view-size", type=int, default=None, help="training crop size")
    p.add_argument("--time-budget", type=float, default=None, help="seconds of training")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    p.add_argument("--devices", default="1", help="number of devices, or 'auto'")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps")
    p.add_argument("--knn-every", type=int, default=0, help="online kNN every N epochs")
    p.add_argument("--importance", type=float, default=0.0,
                   help="fraction of each batch drawn by the images' latest losses "
                        "(methods that report them: simclr, hierarchical)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="method option, e.g. --set temperature=0.1 (repeatable)")
    p.add_argument("--backbone-set", action="append", metavar="KEY=VALUE",
                   help="backbone option or timm kwarg, e.g. --backbone-set stem_stride=2")
    p.add_argument("--view-set", action="append", metavar="KEY=VALUE",
                   help="view option for every view, e.g. --view-set scale=0.4,1.0")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_pretrain)


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("evaluate", help="kNN and linear probe of a run's backbone")
    e.add_argument("run", help="run folder with backbone.safetensors")
    e.add_argument("--data", default="fashion-mnist",
                   help="'fashion-mnist' or a labelled folder (class sub-folders, or --labels)")
    e.add_argument("--labels", default=None, help="CSV of file,label")
    e.add_argument("--no-linear", action="store_true")
    e.add_argument("--quick", action="store_true",
                   help="kNN and linear probe only (no sweep, few-shot, clustering, robustness)")
    e.add_argument("--all-images", action="store_true",
                   help="robustness and clustering on every image (default: seeded random "
                        "subsamples of 2,000 test images and 10,000 images)")
    e.add_argument("--label-fractions", type=float, nargs="+", default=None, metavar="F",
                   help="label-efficiency A/B: fine-tune vs scratch on these label fractions")
    e.add_argument("--seeds", type=int, default=3, help="seeds per label fraction")
    add_finetune_recipe(e)
    add_device_options(e)
    e.set_defaults(handler=run_evaluate)


def add_finetune_recipe(parser: argparse.ArgumentParser) -> None:
    """Fine-tuning flags shared by ``evaluate`` (both A/B arms), ``finetune`` and the benchmark
    script; :func:`finetune_recipe` turns them into the recipe."""
    parser.add_argument("--finetune-epochs", type=float, default=2.0,
                        help="fine-tuning epochs; small labelled sets get --min-steps")
    parser.add_argument("--min-steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate")
    parser.add_argument("--step-ladder", type=float, nargs="+", default=[1, 2, 4, 8],
                        metavar="M", help="multiples of the base steps to choose from on a "
                                          "validation hold-out of the labels; 1 alone: fixed")
    parser.add_argument("--validation-fraction", type=float, default=0.2,
                        help="share of each labelled subset held out to choose the steps")
    parser.add_argument("--validation-folds", type=int, default=1,
                        help="choose the steps by k-fold cross-validation instead (every "
                             "labelled image validated once; k times the cost of the ladder)")
    parser.add_argument("--distill-epochs", type=float, default=0.0,
                        help="then distil each fine-tuned model into a student on unlabelled "
                             "training images for this many epochs (SimCLRv2's third step)")


def finetune_recipe(args: argparse.Namespace) -> FinetuneRecipe:
    from selfsight.eval.label_efficiency import FinetuneRecipe

    return FinetuneRecipe(epochs=args.finetune_epochs, min_steps=args.min_steps, lr=args.lr,
                          step_ladder=tuple(args.step_ladder),
                          validation_fraction=args.validation_fraction,
                          validation_folds=args.validation_folds,
                          distill_epochs=args.distill_epochs)


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """--device (default: the GPU when there is one), --precision and --no-progress."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the "
                                                       "GPU when there is one)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or stage "
                                                                   "lines")


def add_list(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("list", help="list methods or backbones")
    ls.add_argument("what", choices=["methods", "backbones"])
    ls.set_defaults(handler=run_list)


def add_drift(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("drift", help="embedding drift between two image sets")
    d.add_argument("run", help="run folder with backbone.safetensors")
    d.add_argument("reference", help="the earlier images (folder, or 'fashion-mnist')")
    d.add_argument("current", help="the images to compare with them")
    d.add_argument("--permutations", type=int, default=200)
    add_device_options(d)
    d.set_defaults(handler=run_drift)


def add_explore(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("explore", help="what is in unlabelled images: clusters, typical images, "
                                       "near-duplicates")
    x.add_argument("run", help="run folder with backbone.safetensors")
    x.add_argument("images", help=EVERY_IMAGE_HELP)
    x.add_argument("--clusters", type=int, default=None,
                   help="number of clusters (default: chosen by the silhouette)")
    x.add_argument("--max-clusters", type=int, default=20,
                   help="the silhouette choice tries 2 to this many clusters")
    x.add_argument("--suggest", type=int, default=0, metavar="N",
                   help="also pick the N images to label first (TypiClust)")
    add_device_options(x)
    x.set_defaults(handler=run_explore)


def add_anomaly(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("anomaly", help="find defects: fit on normal images, score new ones")
    verbs = a.add_subparsers(dest="anomaly_command", required=True)
    f = verbs.add_parser("fit", help="memory bank of a run's features on normal images")
    f.add_argument("run", help="run folder with backbone.safetensors")
    f.add_argument("normal_images", help="folder of normal (defect-free) images")
    f.add_argument("--out", default=None, help="model folder (default RUN/anomaly)")
    f.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="anomaly option, e.g. --set coreset=0.05 or --set quantile=0.995")
    s = verbs.add_parser("score", help="score images with a fitted model")
    s.add_argument("model_dir", help="folder written by `selfsight anomaly fit`")
    s.add_argument("images", help="folder of images to score")
    s.add_argument("--out", default=None, help="results folder (default MODEL_DIR/scores)")
    s.add_argument("--overlays", type=int, default=50, help="overlay PNGs of the top N images")
    for p in (f, s):
        add_device_options(p)
    a.set_defaults(handler=run_anomaly)


EXPORT_FORMATS = ("onnx",)


def add_export(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("export", help="export a run's backbone (ONNX) with a parity check")
    x.add_argument("run", help="run folder with backbone.safetensors")
    x.add_argument("--format", default="onnx", choices=EXPORT_FORMATS)
    x.add_argument("--out", default=None, help="output folder (default RUN/export)")
    x.add_argument("--opset", type=int, default=17)
    x.add_argument("--images", default=None,
                   help="real images for the parity check (default: the run's training data)")
    x.add_argument("--float-input", action="store_true",
                   help="graph takes normalised float (B, C, S, S) instead of uint8 (B, H, W, C)")
    x.add_argument("--no-latency", action="store_true", help="skip the CPU latency measurement")
    x.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from selfsight.export import export_onnx

    result = export_onnx(args.run, args.out, opset=args.opset, images=args.images,
                         preprocessing=not args.float_input, latency=not args.no_latency)
    parity = result["parity"]
    print(f"parity: max |onnx - torch| = {parity['max']:.2e} (<= {parity['tolerance']:.0e}) "
          f"at batch sizes {', '.join(parity['max_abs_diff'])}")
    for b, ms in result.get("latency_ms_per_image", {}).get("onnxruntime", {}).items():
        torch_ms = result["latency_ms_per_image"]["pytorch"][b]
        print(f"batch {b:>4}: onnxruntime {ms:.3f} ms/image, pytorch {torch_ms:.3f} ms/image")
    print(f"written: {result['model']}")
    return 0


def add_embed(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("embed", help="L2-normalised embeddings of every image, with file names")
    m.add_argument("run", help="run folder with backbone.safetensors")
    m.add_argument("images", help=EVERY_IMAGE_HELP)
    m.add_argument("--out", required=True, help="FILE.npy (names in FILE.npy.json) or .parquet")
    m.add_argument("--batch-size", type=int, default=512)
    add_device_options(m)
    m.set_defaults(handler=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    from selfsight.export import embed

    summary = embed(args.run, args.images, args.out, batch_size=args.batch_size,
                    device=args.device, progress=not args.no_progress,
                    precision=args.precision)
    print(f"{summary['count']} images embedded ({summary['dim']} dims), "
          f"{summary['skipped_count']} unreadable skipped; written: {summary['out']} "
          f"(+ {summary['out']}.json)")
    return 0


def add_finetune(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("finetune", help="a classifier for your labels: fine-tune a run's backbone")
    f.add_argument("run", help="run folder with backbone.safetensors")
    f.add_argument("--data", default="fashion-mnist",
                   help="'fashion-mnist' or a labelled folder (class sub-folders, or --labels)")
    f.add_argument("--labels", default=None, help="CSV of file,label")
    f.add_argument("--out", default=None, help="classifier folder (default RUN/classifier)")
    f.add_argument("--fraction", type=float, default=1.0,
                   help="keep this stratified share of the labelled training images")
    f.add_argument("--seed", type=int, default=0)
    add_finetune_recipe(f)
    add_device_options(f)
    f.set_defaults(handler=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    import selfsight

    meta = selfsight.finetune(args.run, args.data, labels=args.labels, out=args.out,
                              fraction=args.fraction, seed=args.seed,
                              recipe=finetune_recipe(args), device=args.device,
                              progress=not args.no_progress, precision=args.precision)
    steps = meta["steps"]
    how = "fixed"
    if "validation" in steps:
        how = (f"chosen on a hold-out of {steps['held_out']} labels" if steps["folds"] == 1 else
               f"chosen by {steps['folds']}-fold cross-validation on {steps['held_out']} labels")
        how += f"; validation accuracy by steps {steps['validation']}"
    print(f"{meta['labelled_images']} labelled images, {steps['steps']} steps ({how})")
    print(f"test top-1 {meta['test_top1']:.4f} on {meta['test_images']} images; per class: "
          + ", ".join(f"{c} {a:.2f}" for c, a in zip(meta["per_class"]["classes"],
                                                      meta["per_class"]["accuracy"])))
    print(f"classifier: {args.out or f'{args.run}/classifier'}")
    return 0


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="label images with a classifier from `selfsight finetune`")
    p.add_argument("classifier", help="classifier folder (RUN/classifier)")
    p.add_argument("images", help=EVERY_IMAGE_HELP)
    p.add_argument("--out", required=True, help="CSV: file, label, confidence, per-class")
    add_device_options(p)
    p.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    import selfsight

    summary = selfsight.predict(args.classifier, args.images, args.out, device=args.device,
                                progress=not args.no_progress, precision=args.precision)
    print(f"{summary['count']} images labelled, {summary['skipped_count']} unreadable skipped: "
          + ", ".join(f"{c} {n}" for c, n in summary["counts"].items()))
    print(f"written: {summary['out']} (+ {summary['out']}.json)")
    return 0


def add_distill(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("distill", help="distil a run's backbone into a small fast student")
    d.add_argument("run", help="teacher run folder with backbone.safetensors")
    d.add_argument("--student", default="resnet18", help="any timm model name")
    d.add_argument("--student-set", action="append", metavar="KEY=VALUE",
                   help="student option or timm kwarg, e.g. --student-set channels=16,32,64,128")
    d.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="distillation option, e.g. --set loss=smooth_l1 (repeatable)")
    d.add_argument("--data", default=None, help="images to distil on (default: the teacher's)")
    d.add_argument("--out", default=None, help="student run folder")
    d.add_argument("--image-size", type=int, default=None, help="default: the teacher's")
    d.add_argument("--epochs", type=int, default=100)
    d.add_argument("--batch-size", type=int, default=256)
    d.add_argument("--time-budget", type=float, default=None, help="seconds of training")
    d.add_argument("--max-steps", type=int, default=None)
    d.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    d.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(handler=run_distill)


def run_distill(args: argparse.Namespace) -> int:
    from selfsight.distill import distill

    run = distill(args.run, args.student, args.out, data=args.data, epochs=args.epochs,
                  batch_size=args.batch_size, image_size=args.image_size,
                  student_options=key_values(args.student_set, "--student-set"),
                  options=key_values(args.set, "--set"), resume=args.resume,
                  time_budget=args.time_budget, max_steps=args.max_steps,
                  precision=args.precision, accelerator=args.accelerator, seed=args.seed,
                  progress=not args.no_progress)
    print(f"student run folder: {run}")
    return 0


def add_report(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="one self-contained HTML page (and PNGs) about a run")
    r.add_argument("run", help="run folder (metrics.jsonl, eval/*.json from selfsight evaluate)")
    r.add_argument("--out", default=None, help="folder for index.html (default RUN/report)")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from selfsight.reports import report

    page = report(args.run, args.out, progress=not args.no_progress)
    print(f"report written to {page}")
    return 0


def add_segment(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("segment", help="instance masks for a folder of images, no labels needed")
    g.add_argument("run", help="run folder with backbone.safetensors (ViT keys work best)")
    g.add_argument("images", help="image folder (searched recursively)")
    g.add_argument("--out", required=True, help="masks.json: COCO RLE per instance per file")
    g.add_argument("--overlays", default=None, help="folder for overlay PNGs (one per image)")
    g.add_argument("--method", default="auto", choices=("auto", "maskcut", "segmenter"),
                   help="auto: RUN/segmenter when trained, else MaskCut pseudo-masks")
    g.add_argument("--train-segmenter", action="store_true",
                   help="first train a Mask R-CNN on the folder's pseudo-masks (RUN/segmenter)")
    g.add_argument("--image-size", type=int, default=None,
                   help="working size images are resized to (default: the run's image size)")
    g.add_argument("--feature-size", type=int, default=None,
                   help="size for patch features (larger: a finer patch grid)")
    g.add_argument("--masks", type=int, default=3, help="MaskCut cuts per image")
    g.add_argument("--tau", type=float, default=0.15, help="MaskCut affinity threshold")
    g.add_argument("--maskcut-set", action="append", metavar="KEY=VALUE",
                   help="other MaskCut option, e.g. --maskcut-set split_sigma=0.1 (touching "
                        "objects: center, exclude_found, split_ncut, split_sigma)")
    g.add_argument("--segmenter-set", action="append", metavar="KEY=VALUE",
                   help="segmenter option, e.g. --segmenter-set steps=2000")
    add_device_options(g)
    g.set_defaults(handler=run_segment)


def run_segment(args: argparse.Namespace) -> int:
    from selfsight.config import config_from_dict
    from selfsight.segment import MaskCutConfig, PseudoMaskConfig, SegmenterConfig, segment

    cut = config_from_dict(MaskCutConfig, {"n_masks": args.masks, "tau": args.tau,
                                           **key_values(args.maskcut_set, "--maskcut-set")},
                           "--maskcut-set")
    masks = PseudoMaskConfig(size=args.feature_size, maskcut=cut)
    train = None
    if args.train_segmenter:
        train = config_from_dict(SegmenterConfig, key_values(args.segmenter_set,
                                                              "--segmenter-set"), "segmenter")
    summary = segment(args.run, args.images, args.out, overlays=args.overlays,
                      image_size=args.image_size, masks=masks, method=args.method,
                      train_segmenter=train, device=args.device,
                      progress=not args.no_progress, precision=args.precision)
    found = sum(len(r["instances"]) for r in summary["results"])
    print(f"{len(summary['results'])} images, {found} instances ({summary['method']}), "
          f"{len(summary['skipped'])} unreadable skipped; written: {args.out}"
          + (f", overlays in {args.overlays}" if args.overlays else ""))
    return 0


# One (add_X, run_X) pair per command: a new command adds its pair and one entry here.
COMMANDS = [add_pretrain, add_evaluate, add_drift, add_list, add_anomaly, add_export, add_embed,
            add_distill]
COMMANDS.append(add_report)
COMMANDS.append(add_segment)
COMMANDS += [add_finetune, add_predict]
COMMANDS.append(add_explore)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfsight", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def summary_table(result: dict[str, Any]) -> str:
    """kNN and linear accuracy of the backbone beside the raw-pixel kNN baseline."""
    def cell(key: str) -> str:
        return f"{result[key]:.4f}" if key in result else "-"

    rows = [f"{'':<12}{'kNN k=20':>10}{'kNN k=200':>11}{'linear':>9}",
            f"{'backbone':<12}{cell('knn_k20'):>10}{cell('knn_k200'):>11}"
            f"{cell('linear_top1'):>9}"]
    if "pixels_knn_k200" in result:
        rows.append(f"{'raw pixels':<12}{cell('pixels_knn_k20'):>10}"
                    f"{cell('pixels_knn_k200'):>11}{'-':>9}")
    return "\n".join(rows + full_summary(result))


def full_summary(result: dict[str, Any]) -> list[str]:
    """One line each for the full evaluation's clustering, few-shot and robustness sections."""
    lines = []
    if c := result.get("clustering"):
        pixels = c.get("pixels", {}).get("accuracy")
        lines.append(f"k-means ({len(c.get('seeds', [0]))} seeds): accuracy {c['accuracy']:.4f} "
                     f"± {c.get('std', {}).get('accuracy', 0):.4f}, NMI {c['nmi']:.4f}, "
                     f"ARI {c['ari']:.4f}"
                     + ("" if pixels is None else f" (raw pixels {pixels:.4f})"))
    if shots := result.get("few_shot"):
        lines.append("few-shot: " + ", ".join(
            f"{s['n_way']}-way {s['k_shot']}-shot {s['mean']:.4f} ± {s['ci95']:.4f}"
            for s in shots))
    if r := result.get("robustness"):
        worst = [(accs[-1], name) for name, accs in r["corruptions"].items()]
        accuracy, name = min(worst)
        lines.append(f"corrupted test images: clean {r['clean']:.4f}, mean "
                     f"{r['mean_corrupted']:.4f}, worst "
                     f"{name.replace('_', ' ')} at severity {r['severities'][-1]} {accuracy:.4f}")
    return lines


def run_list(args: argparse.Namespace) -> int:
    from selfsight.backbone_names import OPTIONS, list_backbones

    items = method_descriptions() if args.what == "methods" else list_backbones()
    width = max(map(len, items))
    for name, text in items.items():
        print(f"{name:<{width}}  {text}")
    if args.what == "backbones":
        print("(any other timm model name works too)\n\noptions (--backbone-set key=value; any "
              "other key goes to timm's create_model):")
        width = max(map(len, OPTIONS))
        for key, text in OPTIONS.items():
            print(f"  {key:<{width}}  {text}")
    return 0


def method_descriptions() -> dict[str, str]:
    """Name -> description of every method, read from the method files' class attributes
    without importing them (torch and Lightning take seconds to load); a test holds it equal
    to ``selfsight.list_methods()``."""
    import ast
    import importlib.util
    from pathlib import Path

    found = {}
    folder = Path(importlib.util.find_spec("selfsight.methods").origin).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            values = {t.id: stmt.value for stmt in node.body if isinstance(stmt, ast.Assign)
                      for t in stmt.targets if isinstance(t, ast.Name)}
            if "name" in values and "description" in values:
                name = ast.literal_eval(values["name"])
                if name:
                    found[name] = ast.literal_eval(values["description"])
    return dict(sorted(found.items()))


def run_pretrain(args: argparse.Namespace) -> int:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    import selfsight

    devices = args.devices if args.devices == "auto" else int(args.devices)
    run = selfsight.pretrain(
        args.data, args.method, args.backbone, args.out, args.epochs, args.batch_size,
        image_size=args.image_size, view_size=args.view_size,
        options=key_values(args.set, "--set"),
        backbone_options=key_values(args.backbone_set, "--backbone-set"),
        view_options=key_values(args.view_set, "--view-set"),
        resume=args.resume, time_budget=args.time_budget, max_steps=args.max_steps,
        accelerator=args.accelerator, devices=devices, num_nodes=args.num_nodes,
        strategy=args.strategy, precision=args.precision, seed=args.seed,
        workers=args.workers, checkpoint_every=args.checkpoint_every,
        knn_every=args.knn_every, importance=args.importance,
        progress=not args.no_progress)
    if rank_zero_only.rank == 0:  # under DDP every process returns here
        print(f"run folder: {run}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import selfsight

    result = selfsight.evaluate(
        args.run, args.data, labels=args.labels, linear=not args.no_linear, full=not args.quick,
        label_fractions=args.label_fractions, seeds=tuple(range(args.seeds)),
        recipe=finetune_recipe(args), sizes=section_sizes(args.all_images),
        device=args.device, progress=not args.no_progress, precision=args.precision)
    print(summary_table(result))
    if "label_efficiency" in result:
        print(label_efficiency_table(result["label_efficiency"]))
    print(f"written to {args.run}/eval/")
    return 0


def section_sizes(all_images: bool) -> Any:
    from selfsight.eval.suite import SectionSizes

    return SectionSizes.everything() if all_images else SectionSizes()


def label_efficiency_table(study: dict[str, Any]) -> str:
    """Mean ± std top-1 per arm and label fraction, and the savings factor."""
    keys = [str(f) for f in study["fractions"]]
    width = max(12, *(len(arm) + 1 for arm in study["mean"]))
    rows = [f"{'labels':<{width}}" + "".join(f"{float(k):>16.0%}" for k in keys)]
    for arm, means in study["mean"].items():
        rows.append(f"{arm:<{width}}" + "".join(
            f"{means[k]:>9.4f} ±{study['std'][arm][k]:.3f}" if k in means else f"{'-':>16}"
            for k in keys))
    for arm, chosen in study.get("budgets", {}).items():
        rows.append(f"{arm + ' steps':<{width}}" + "".join(
            f"{chosen[k]['steps']:>16}" if k in chosen else f"{'-':>16}" for k in keys))
    factor = study["savings_factor"]
    bound = "<=" if study.get("savings_upper_bound") else ""
    rows.append(f"label savings factor: {'-' if factor is None else f'{bound}{factor:.1f}x'} "
                f"({study['savings_note']})")
    return "\n".join(rows)


def run_drift(args: argparse.Namespace) -> int:
    import selfsight

    result = selfsight.drift(args.run, args.reference, args.current, args.permutations,
                             device=args.device, progress=not args.no_progress,
                             precision=args.precision)
    verdict = "drift" if result["p_value"] < 0.05 else "no significant drift"
    print(f"MMD^2 {result['mmd2']:.5f} (95% of the no-drift null below "
          f"{result['null_mmd2_95']:.5f}), p = {result['p_value']:.4f}: {verdict}")
    print(f"written to {args.run}/eval/drift.json")
    return 0


def run_explore(args: argparse.Namespace) -> int:
    import selfsight
    from selfsight.api import eval_name

    result = selfsight.explore(args.run, args.images, args.clusters, args.max_clusters,
                               args.suggest, args.device, not args.no_progress,
                               precision=args.precision)
    scores = result["silhouette"]
    chosen = (f"silhouette {scores[result['n_clusters']]:.3f}, the highest of k = "
              f"{min(scores)}..{max(scores)}" if scores else "as given")
    if scores and result["n_clusters"] == max(scores):
        chosen += "; the largest k tried: a larger --max-clusters may fit better"
    print(f"{result['images']:,} images in {result['n_clusters']} clusters ({chosen}); sizes: "
          + ", ".join(f"{c['size']:,}" for c in result["clusters"]))
    print(f"near-duplicate pairs: {result['near_duplicates']['pairs']:,}"
          + (f"; unreadable files skipped: {result['skipped_files']}"
             if result["skipped_files"] else ""))
    if agreement := result.get("agreement_with_labels"):
        print(f"agreement with the source's {agreement['classes']} labels: NMI "
              f"{agreement['nmi']:.3f}, ARI {agreement['ari']:.3f}")
    if picks := result.get("to_label"):
        covered = (f", covering {picks['classes_covered']} of the source's classes"
                   if "classes_covered" in picks else "")
        print(f"{picks['budget']} images to label first{covered}: {picks['file']}")
    name = eval_name(args.images)
    print(f"written to {args.run}/eval/{name}_explore.json and {name}_clusters.csv; "
          f"`selfsight report {args.run}` draws them")
    return 0


def run_anomaly(args: argparse.Namespace) -> int:
    import selfsight

    if args.anomaly_command == "fit":
        model = selfsight.anomaly_fit(args.run, args.normal_images, args.out, device=args.device,
                                      progress=not args.no_progress, precision=args.precision,
                                      **key_values(args.set, "--set"))
        print(f"anomaly model: {model}")
        return 0
    result = selfsight.anomaly_score(args.model_dir, args.images, args.out,
                                     overlays=args.overlays, device=args.device,
                                     progress=not args.no_progress, precision=args.precision)
    print(f"{result['flagged']} of {result['count']} images flagged anomalous "
          f"(threshold {result['threshold']:.4f}: {result['threshold_rule']})")
    out = args.out or f"{args.model_dir}/scores"
    print(f"written to {out}/scores.json and {out}/overlays/")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as err:
        print(f"selfsight: error: {err}", file=sys.stderr)
        return 2
    except RunInterrupted as err:
        print(f"selfsight: {err}", file=sys.stderr)
        return 128 + err.signum


if __name__ == "__main__":
    sys.exit(main())
