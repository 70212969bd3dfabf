"""A classifier for your own labels: the pretrained backbone fine-tuned end to end with a linear
head on a labelled set, its training length chosen on the labels themselves (the validated step
ladder of the label-efficiency A/B, :func:`~selfsight.eval.label_efficiency.validated_steps`),
saved without pickle, and applied to new images. A run with a signal backbone is fine-tuned on
labelled signals and applied to new series the same way: the same training step
(:func:`~selfsight.eval.finetune.train_classifier`, on its signal views), the same artifact.

The folder it writes holds ``backbone.safetensors`` + ``backbone.json`` (the fine-tuned
backbone: ``embed``, ``export`` and ``anomaly`` take it like any run), ``head.safetensors``
(the linear layer) and ``classifier.json`` (class names, recipe, the steps chosen and the test
accuracy)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsight.artifacts import CLASSIFIER, load_artifact, load_weights, save_artifact
from selfsight.backbones import BackboneConfig, load_backbone
from selfsight.data import load_eval_sets, load_every_image, run_images
from selfsight.device import current_precision, default_device, runs_at_precision
from selfsight.errors import UserError
from selfsight.eval.drift import per_class
from selfsight.eval.finetune import Classifier, finetune_views_note, probabilities
from selfsight.eval.label_efficiency import FinetuneRecipe, stratified_subset, validated_steps
from selfsight.file_names import portable_name
from selfsight.files import write_text
from selfsight.results import FilesSummary, FinetuneResult
from selfsight.run_folder import RunFolder
from selfsight.signals.data import SignalSet, load_signals
from selfsight.signals.embed import every_signal
from selfsight.signals.evaluate import signal_eval_sets
from selfsight.signals.names import is_signal_backbone, is_signal_source
from selfsight.signals.windows import as_trained


@runs_at_precision
def finetune(
    run: str | Path,
    data: Any = "fashion-mnist",
    labels: str | Path | None = None,
    out: str | Path | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    recipe: FinetuneRecipe | None = None,
    device: str | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune ``run``'s backbone on the labelled training images of ``data`` (class
    sub-folders, a CSV of file,label, or Fashion-MNIST; for a run on signals, labelled signals:
    ``uea:NAME``, a .ts or .npz file, ...; ``fraction`` < 1 keeps a stratified, seeded share of
    them) and save the classifier to ``out`` (default ``RUN/classifier``).
    Test accuracy, per class and overall, comes from the test split (data without one holds out
    20%). With ``recipe.distill_epochs`` > 0 the fine-tuned model then teaches a student on the
    run's own unlabelled training images (SimCLRv2's third step).
    Returns what ``classifier.json`` records."""
    run = Path(run)
    recipe = recipe or FinetuneRecipe()
    device = torch.device(device or default_device())
    backbone = load_backbone(run)
    cfg = backbone.config
    signals = is_signal_backbone(cfg.name) or is_signal_source(data)
    if signals:  # refuses a run and data of different kinds, and the wrong channel count
        train, test = signal_eval_sets(RunFolder(run), backbone, data, labels, progress)
    else:
        train, test = load_eval_sets(data, cfg.image_size, cfg.in_chans, labels, progress)
    if fraction < 1:
        train = train.subset(stratified_subset(train.labels, fraction, seed))
    num_classes = max(train.num_classes, int(test.labels.max()) + 1)
    names = list(train.classes or [])
    names += [str(i) for i in range(len(names), num_classes)]  # one name per output
    pile = None  # the unlabelled images to distil on, found before the slow part
    if recipe.distill_epochs > 0:
        pile = run_signals(run, cfg) if signals else run_images(
            run, cfg.image_size, cfg.in_chans, progress)
        if pile is None:
            raise UserError(f"{run}/config.yaml: the run's training images cannot be loaded "
                            "again, so there is nothing unlabelled to distil on")
    chosen = validated_steps(backbone, train.images, train.labels, num_classes, recipe, seed,
                             device, progress)
    model = recipe.train(backbone, train.images, train.labels, num_classes, chosen["steps"],
                         seed, device, progress)
    distilled_on = None
    if pile is not None:
        model = recipe.train(backbone, train.images, train.labels, num_classes,
                             recipe.distill_steps(chosen["steps"], len(pile)), seed, device,
                             progress, teacher=model, unlabeled=pile.images)
        distilled_on = len(pile)
    predicted = probabilities(model, test.images, device).argmax(1)
    meta = {"run": str(run), "data": str(data), "backbone": cfg.name, "classes": names,
            "labelled_images": len(train), "fraction": fraction, "seed": seed,
            "recipe": asdict(recipe), "views": finetune_views_note(cfg), "steps": chosen,
            "distilled_on_images": distilled_on,
            "test_images": len(test), "precision": current_precision(device).name,
            "test_top1": round(float((predicted == test.labels).mean()), 4),
            "per_class": per_class(train.labels, np.asarray(test.labels), predicted, names)}
    save_classifier(model, out if out is not None else RunFolder(run).classifier, meta)
    return FinetuneResult.from_json(meta)


def run_signals(run: Path, cfg: BackboneConfig) -> SignalSet | None:
    """The training split of the signals named in ``run/config.yaml`` as the run trained on
    them (at its length, or cut into its windows), or None when they cannot be read again (an
    in-memory array, a moved file)."""
    data = RunFolder(run).read_config().get("data")
    if not is_signal_source(data):
        return None
    try:
        return as_trained(load_signals(data, "train", verbose=False), cfg.image_size,
                          cfg.windows)
    except (ValueError, OSError):
        return None


def save_classifier(model: Classifier, directory: str | Path, meta: dict[str, Any]) -> Path:
    """Write the backbone, the head and ``classifier.json`` (artifacts: safetensors + JSON)."""
    model.backbone.save(directory)
    head = {k: v.float() for k, v in model.head.state_dict().items()}
    return save_artifact(directory, CLASSIFIER, meta, head)


def load_classifier(directory: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a saved classifier (no pickle) and its ``classifier.json``."""
    directory = Path(directory)
    meta, head = load_artifact(directory, CLASSIFIER)
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes:
        raise UserError(f"{directory / CLASSIFIER.meta_file}: needs 'classes', the list of "
                        "class names")
    backbone = load_backbone(directory)
    model = Classifier(backbone, len(classes))
    found = tuple(head["weight"].shape) if "weight" in head else None
    if found != tuple(model.head.weight.shape):
        raise UserError(f"{directory / CLASSIFIER.weights_file}: weight {found} does not fit "
                        f"{len(classes)} classes of {backbone.dim}-dim features")
    load_weights(model.head, head, directory / CLASSIFIER.weights_file)
    return model.eval(), meta


@runs_at_precision
def predict(classifier: str | Path, images: Any, out: str | Path, device: str | None = None,
            progress: bool = True) -> FilesSummary:
    """Classify every readable image of ``images`` (a folder, searched recursively, or any image
    source) and write ``out`` as CSV: file, label, confidence (the softmax probability of that
    label), then one probability column per class. Unreadable files are skipped and listed in
    the returned summary (also written to ``OUT.json``). File names are written as
    :func:`selfsight.files.portable_name` writes them.

    A classifier on signals reads ``images`` as ``embed`` does (every series of a signal
    source, the training split then the test split; a few long recordings as windows of the
    trained length) and its first column is ``series``, each series' row name."""
    model, meta = load_classifier(classifier)
    cfg = model.backbone.config
    if is_signal_backbone(cfg.name):
        data = every_signal(images, model.backbone)
    elif is_signal_source(images):
        raise UserError(f"{classifier}: its backbone ({cfg.name}) is for images; {images} "
                        "holds signals")
    else:
        data = load_every_image(images, cfg.image_size, cfg.in_chans, progress)
    probs = probabilities(model, data.images, torch.device(device or default_device()),
                          progress=progress)
    classes, best = meta["classes"], probs.argmax(1)
    out = Path(out)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["series" if is_signal_backbone(cfg.name) else "file", "label",
                     "confidence", *classes])
    for name, row, k in zip(data.row_names(), probs, best):
        writer.writerow([portable_name(name), classes[k], f"{row[k]:.4f}",
                         *(f"{p:.4f}" for p in row)])
    write_text(out, table.getvalue())  # UTF-8, atomic: never a truncated table
    summary = {"classifier": portable_name(classifier), "images": portable_name(str(images)),
               "out": portable_name(out),
               "count": len(data), "counts": {c: int((best == i).sum())
                                              for i, c in enumerate(classes)},
               "skipped_count": len(data.skipped), "precision": current_precision(device).name,
               "skipped": [{"file": portable_name(f), "reason": r} for f, r in data.skipped]}
    typed = FilesSummary.from_json(summary)
    typed.save(f"{out}.json")
    return typed
