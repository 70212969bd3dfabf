"""ONNX export of a run's backbone (Open Neural Network Exchange, opset 17 by default), checked
against PyTorch on real images and timed in onnxruntime on the CPU.

The exported graph includes selfsight's preprocessing, so the line feeds what a camera or
decoder gives it: **uint8 images (B, H, W, C)**, channels last, at ``input_size`` (the size of
the run's training images, e.g. 28 for Fashion-MNIST). The graph scales to [0, 1], resizes to
the backbone's image size with the same antialiased bilinear filter as evaluation (as two fixed
matrix products, which ONNX can express exactly), normalises with the run's mean/std and returns
the pooled features (B, D) float32, not L2-normalised (``embed`` and kNN normalise them); for
a classifier folder from ``selfsight finetune`` it returns the class probabilities instead. With
``preprocessing=False`` the input is instead the normalised float32 tensor (B, C, S, S) that the
backbone itself takes. A run with a signal backbone takes **float32 signals (B, C, L)** at the
trained length, raw: the backbone standardises each channel with its training statistics inside
the graph; its parity is checked on the run's own training series. The batch axis is dynamic.

Exporter: torch 2.11-2.14 offer the TorchScript exporter (``dynamo=False``, deprecated but
dependency-free) and the ``torch.export`` one (``dynamo=True``, needs ``onnxscript``, which
selfsight does not depend on); the TorchScript one is used unless asked otherwise.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import selfsight.files as files
from selfsight.artifacts import CLASSIFIER
from selfsight.backbones import Backbone, load_backbone
from selfsight.classify import load_classifier
from selfsight.data import load_images, run_images
from selfsight.errors import UserError
from selfsight.eval.extract import preprocess
from selfsight.eval.timing import median_ms_per_image
from selfsight.results import ExportResult
from selfsight.run_folder import RunFolder
from selfsight.signals.data import load_signals
from selfsight.signals.names import is_signal_backbone, is_signal_source

INPUT, OUTPUT, PROBABILITIES = "images", "features", "probabilities"
SIGNAL_INPUT = "signals"
TOLERANCE = 1e-4  # max |onnx - torch| in fp32
PARITY_BATCHES = (1, 7, 32)
DEFAULT_OPSET = 17


def resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) weights of PyTorch's antialiased bilinear resize along one axis: the resize
    is linear and separable, so resizing the identity (along that axis only) gives its matrix."""
    basis = torch.eye(n_in).view(1, 1, n_in, n_in)  # column j = unit impulse at row j
    out = F.interpolate(basis, size=(n_out, n_in), mode="bilinear", antialias=True,
                        align_corners=False)  # width unchanged: (1, 1, n_out, n_in)
    return out[0, 0].contiguous()


class DeployModel(nn.Module):
    """uint8 (B, H, W, C) at ``input_size`` -> pooled features (B, D): ``eval.extract.preprocess``
    written with export-friendly ops, then the backbone. ``preprocessing=False``: the backbone
    alone, on normalised float (B, C, S, S). With a classifier ``head``: softmax probabilities
    (B, classes) instead of the features."""

    def __init__(self, backbone: Backbone, input_size: int, preprocessing: bool = True,
                 head: nn.Linear | None = None) -> None:
        super().__init__()
        cfg = backbone.config
        # A signal backbone standardises its raw (B, C, L) input itself: nothing to add.
        self.signal = is_signal_backbone(cfg.name)
        self.input_name = SIGNAL_INPUT if self.signal else INPUT
        preprocessing = preprocessing and not self.signal
        self.backbone, self.preprocessing, self.head = backbone, preprocessing, head
        self.resize = preprocessing and input_size != cfg.image_size
        if self.resize:
            self.register_buffer("rows", resize_matrix(input_size, cfg.image_size))  # (S, H)
            self.register_buffer("cols", resize_matrix(input_size, cfg.image_size).T)  # (W, S)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocessing:
            x = x.permute(0, 3, 1, 2).float() / 255  # (B, C, H, W) in [0, 1]
            if self.resize:
                x = torch.matmul(torch.matmul(self.rows, x), self.cols)  # (B, C, S, S)
            x = (x - self.mean) / self.std
        return self.outputs(self.backbone(x))

    def outputs(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) pooled features, or (B, classes) probabilities with a head."""
        return features if self.head is None else self.head(features).softmax(1)


def parity_inputs(backbone: Backbone, run: Path, images: Any, input_size: int | None,
                  count: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """(count, H, W, C) uint8 real images (from ``images`` or the run's data) and a note of
    where they came from; random pixels only when no real images can be found."""
    cfg = backbone.config
    if images is not None:
        found, where = load_images(images, size=input_size or cfg.image_size,
                                   channels=cfg.in_chans), "given images"
    else:
        found, where = run_images(run, input_size or cfg.image_size, cfg.in_chans), \
            "the run's training images"
    if found is None:
        size = input_size or cfg.image_size
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, (count, size, size, cfg.in_chans), dtype=np.uint8)
        return pixels, "random uint8 pixels (the run's data could not be loaded)"
    if found.size[0] != found.size[1]:
        raise UserError(f"{where}: images are {found.size}, export needs square images")
    if input_size is not None and found.size[0] != input_size:
        raise UserError(f"{where}: images are {found.size[0]} px but input_size={input_size}; "
                        "pass images of that size or leave input_size unset")
    index = np.random.default_rng(seed).choice(len(found), size=count,
                                               replace=len(found) < count)
    return np.asarray(found.images[np.sort(index)]), f"{len(index)} of {where}"


def signal_parity_inputs(backbone: Backbone, run: Path, signals: Any, count: int,
                         seed: int = 0) -> tuple[np.ndarray, str]:
    """(count, C, L) float32 real series at the backbone's length (from ``signals``, any
    ``load_signals`` source, or the run's training data) and a note of where they came from;
    random ones around the training mean only when the run's data cannot be loaded."""
    cfg = backbone.config
    found, where = None, str(signals)
    if signals is not None:
        found = load_signals(signals, "train", cfg.image_size, verbose=False)
    else:
        data = RunFolder(run).read_config().get("data")
        where = f"the run's training series ({data})"
        try:
            found = load_signals(data, "train", cfg.image_size, verbose=False) \
                if is_signal_source(data) else None
        except (ValueError, FileNotFoundError, OSError):
            found = None
    rng = np.random.default_rng(seed)
    if found is None:
        mean, std = (np.asarray(v, np.float32).reshape(1, -1, 1) for v in (cfg.mean, cfg.std))
        series = rng.normal(size=(count, cfg.in_chans, cfg.image_size)) * std + mean
        return series.astype(np.float32), "random series (the run's data could not be loaded)"
    found.check_channels(cfg.in_chans, where)
    index = rng.choice(len(found), size=count, replace=len(found) < count)
    return found.signals[np.sort(index)], f"{len(index)} of {where}"


def _export(model: DeployModel, example: torch.Tensor, model_path: Path, opset: int,
            dynamo: bool) -> bytes:
    """The exported model, as bytes: nothing is written at ``model_path`` yet (it is written
    once, atomically, after labelling). The TorchScript exporter writes into memory; the
    dynamo one needs a path, so it writes a temporary beside ``model_path`` (and maybe its
    ``.data`` file), read back inlined and removed."""
    import onnx

    output = OUTPUT if model.head is None else PROBABILITIES
    scratch = files.temporary_path(model_path.with_name(f"{model_path.name}.export"))
    target: Any = scratch if dynamo else io.BytesIO()
    try:
        with warnings.catch_warnings():  # the deprecation notice and timm's tracer warnings
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(model, (example,), str(target) if dynamo else target,
                              input_names=[model.input_name], output_names=[output],
                              opset_version=opset, dynamo=dynamo,
                              dynamic_axes={model.input_name: {0: "batch"}, output: {0: "batch"}})
        return onnx.load(str(scratch)).SerializeToString() if dynamo else target.getvalue()
    except OSError as error:
        translated = files.disk_error(error, model_path)
        if translated is None:
            raise
        raise translated from error
    finally:
        if dynamo:
            for leftover in (scratch, scratch.with_name(scratch.name + ".data")):
                leftover.unlink(missing_ok=True)


def _label(model: bytes, meta: dict[str, Any]) -> bytes:
    """Check the graph and record how to feed it in the model's own metadata."""
    import onnx

    proto = onnx.load_model_from_string(model)
    onnx.checker.check_model(proto)
    onnx.helper.set_model_props(proto, {k: json.dumps(v) for k, v in meta.items()})
    return proto.SerializeToString()


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # Idle threads sleep instead of spinning: on a shared CPU spinning steals the cores that
    # PyTorch (and everyone else) needs, and makes both timings noisy.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _reference_input(model: DeployModel, pixels: np.ndarray) -> torch.Tensor:
    """What the backbone takes in PyTorch: selfsight's own ``preprocess`` of uint8 (B, H, W, C)
    images, or float32 signals (B, C, L) as they are."""
    if model.signal:
        return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    x = torch.from_numpy(np.ascontiguousarray(pixels))  # (B, H, W, C) uint8
    return preprocess(x.permute(0, 3, 1, 2), model.backbone)


def _torch_input(model: DeployModel, pixels: np.ndarray) -> torch.Tensor:
    if model.preprocessing:
        return torch.from_numpy(np.ascontiguousarray(pixels))  # (B, H, W, C) uint8
    return _reference_input(model, pixels)


@torch.no_grad()
def check_parity(model: DeployModel, session: Any, pixels: np.ndarray,
                 batch_sizes: tuple[int, ...]) -> dict[str, float]:
    """Max |onnx - torch| per batch size; the reference is selfsight's own ``preprocess`` (with
    F.interpolate) and the backbone, in fp32."""
    diffs = {}
    for b in batch_sizes:
        ref = model.outputs(model.backbone(_reference_input(model, pixels[:b])))
        got = session.run(None, {model.input_name: _torch_input(model, pixels[:b]).numpy()})[0]
        if got.shape != tuple(ref.shape):
            raise ValueError(f"ONNX output {got.shape} for batch {b}, expected "
                             f"{tuple(ref.shape)}: the batch axis is not dynamic")
        diffs[str(b)] = float(np.abs(got - ref.numpy()).max())
    return diffs


@torch.no_grad()
def cpu_latency(model: DeployModel, session: Any, pixels: np.ndarray, batch_sizes: tuple[int, ...],
                repeats: int = 20) -> dict[str, dict[str, float]]:
    """ms per image in onnxruntime and in PyTorch (eager, fp32), CPU, per batch size."""
    out: dict[str, dict[str, float]] = {"onnxruntime": {}, "pytorch": {}}
    for b in batch_sizes:
        batch = np.resize(pixels, (b, *pixels.shape[1:]))  # real images, repeated if needed
        feed = {model.input_name: _torch_input(model, batch).numpy()}
        x = torch.from_numpy(feed[model.input_name])
        reps = max(3, repeats // max(1, b // 32))
        out["onnxruntime"][str(b)] = median_ms_per_image(lambda f=feed: session.run(None, f), b,
                                                         reps)
        out["pytorch"][str(b)] = median_ms_per_image(lambda x=x: model(x), b, reps)
    out["speedup"] = {b: out["pytorch"][b] / out["onnxruntime"][b] for b in out["pytorch"]}
    return out


def export_onnx(
    run: str | Path,
    out: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    *,
    images: Any = None,
    input_size: int | None = None,
    preprocessing: bool = True,
    batch_sizes: tuple[int, ...] = PARITY_BATCHES,
    latency: bool = True,
    latency_batches: tuple[int, ...] = (1, 256),
    threads: int | None = None,
    dynamo: bool = False,
) -> ExportResult:
    """Export ``run``'s backbone (with its head and a softmax when ``run`` is a classifier folder
    from ``selfsight finetune``) to ``OUT/model.onnx`` (default ``RUN/export/``) and write
    ``OUT/export.json``: input/output spec, parity (max |onnx - torch| per batch size on real
    images, must be <= 1e-4) and CPU latency per image (onnxruntime vs PyTorch, median after
    warm-up). ``images`` (any ``load_images`` source) default to the run's training data."""
    run = Path(run)

    head, classes = None, None
    if (run / CLASSIFIER.weights_file).is_file():
        classifier, meta = load_classifier(run)
        backbone, head, classes = classifier.backbone, classifier.head, meta["classes"]
        head = head.float().cpu().eval()
        if images is None and isinstance(meta.get("data"), str) and (
                meta["data"].startswith("fashion-mnist") or Path(meta["data"]).is_dir()
                or is_signal_source(meta["data"])):
            images = meta["data"]  # the labelled images it was fine-tuned on, for parity
    else:
        backbone = load_backbone(run)
    backbone = backbone.float().cpu().eval()
    cfg = backbone.config
    count = max((*batch_sizes, 1)) if check else 1
    if is_signal_backbone(cfg.name):
        pixels, source = signal_parity_inputs(backbone, run, images, max(count, 32))
    else:
        pixels, source = parity_inputs(backbone, run, images, input_size, max(count, 32))
    size = pixels.shape[1]
    model = DeployModel(backbone, size, preprocessing, head).eval()
    out_dir = Path(out) if out is not None else RunFolder(run).export_dir
    files.make_folder(out_dir)
    model_path = out_dir / "model.onnx"
    example = _torch_input(model, pixels[:2])
    exported = _export(model, example, model_path, opset, dynamo)
    spec = {
        "input": {"name": INPUT, "dtype": "uint8", "layout": "NHWC",
                  "shape": ["batch", size, size, cfg.in_chans]} if preprocessing else
                 {"name": INPUT, "dtype": "float32", "layout": "NCHW", "shape": [
                     "batch", cfg.in_chans, cfg.image_size, cfg.image_size],
                  "normalisation": {"mean": list(cfg.mean), "std": list(cfg.std)}},
        "output": {"name": OUTPUT, "dtype": "float32", "shape": ["batch", backbone.dim],
                   "note": "pooled backbone features, not L2-normalised"} if head is None else
                  {"name": PROBABILITIES, "dtype": "float32", "shape": ["batch", len(classes)],
                   "note": "softmax probabilities, one column per class", "classes": classes},
        "preprocessing": "inside the graph: /255, antialiased bilinear resize to "
                         f"{cfg.image_size} px, (x - mean) / std" if preprocessing else
                         "none: feed normalised float input",
    }
    if cfg.standardize:
        spec["preprocessing"] += "; then, inside the graph, each image to zero mean and unit " \
                                 "variance (the backbone's standardize option)"
    if model.signal:
        spec["input"] = {"name": SIGNAL_INPUT, "dtype": "float32", "layout": "NCL",
                         "shape": ["batch", cfg.in_chans, cfg.image_size],
                         "normalisation": {"mean": list(cfg.mean), "std": list(cfg.std)}}
        spec["preprocessing"] = ("inside the graph: each channel (x - mean) / std with the "
                                 "training split's statistics; feed raw signals")
    labelled = _label(exported, {"selfsight_run": str(run), **spec})
    files.write_atomic(model_path, lambda f: f.write(labelled), len(labelled))
    result: dict[str, Any] = {
        "run": str(run), "model": str(model_path), "backbone": cfg.name, "opset": opset,
        "exporter": "dynamo" if dynamo else "torchscript", **spec,
        "precision": "32-true: the graph and the PyTorch reference of the parity check and the "
                     "latency comparison both run in fp32, whatever the hardware",
        "versions": _versions(),
    }
    threads = threads or torch.get_num_threads()
    session = _session(model_path, threads)
    if check:
        diffs = check_parity(model, session, pixels, batch_sizes)
        result["parity"] = {"inputs": source, "max_abs_diff": diffs,
                            "max": max(diffs.values()), "tolerance": TOLERANCE,
                            "passed": max(diffs.values()) <= TOLERANCE}
    if latency:
        result["latency_ms_per_image"] = {"threads": threads, **cpu_latency(
            model, session, pixels, latency_batches)}
    typed = ExportResult.from_json(result)
    typed.save(out_dir / "export.json")
    if check and not result["parity"]["passed"]:
        raise UserError(f"{model_path}: ONNX and PyTorch differ by {result['parity']['max']:.2e} "
                        f"> {TOLERANCE:.0e} (see {out_dir / 'export.json'}); try another opset")
    return typed


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}
