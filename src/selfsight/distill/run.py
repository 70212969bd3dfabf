"""``distill``: a run's frozen backbone teaches a small student; the result is a run folder."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from selfsight.backbones import (
    BackboneConfig,
    backbone_config,
    is_vit_name,
    load_backbone,
    resolve_alias,
)
from selfsight.config import config_from_dict
from selfsight.data import load_images
from selfsight.distill.distiller import DistillConfig, Distiller
from selfsight.errors import UserError
from selfsight.run_folder import RunFolder
from selfsight.train.defaults import choose_epochs
from selfsight.train.fit import TrainConfig, fit_and_save, with_resolved_precision
from selfsight.train.run_start import start_run


def student_config(teacher: BackboneConfig, student: str, image_size: int | None = None,
                   options: dict[str, Any] | None = None) -> BackboneConfig:
    """The student's BackboneConfig: the teacher's channels, image size, normalisation and (for
    CNNs) small-image stem, unless ``image_size`` or ``options`` say otherwise; other options are
    timm kwargs (e.g. ``channels=(16, 32, 64, 128)``, ``layers=(1, 1, 1, 1)``)."""
    name, opts = resolve_alias(student, options)
    if not is_vit_name(name):
        opts.setdefault("small_stem", teacher.small_stem)
        opts.setdefault("stem_stride", teacher.stem_stride)
    cfg = backbone_config(name, teacher.in_chans, image_size or teacher.image_size, opts)
    return replace(cfg, mean=teacher.mean, std=teacher.std)


def teacher_data(run: Path) -> str:
    """The data the teacher was pretrained on, from its config.yaml."""
    teacher = RunFolder(run)
    data = teacher.read_config().get("data")
    if not isinstance(data, str):
        raise UserError(f"{teacher.config}: no reloadable 'data' recorded (in-memory arrays?); "
                        "pass the images to distil on (data=... / --data)")
    return data


def distill(
    run: str | Path,
    student: str = "resnet18",
    out: str | Path | None = None,
    data: Any = None,
    epochs: int | None = None,
    batch_size: int = 256,
    *,
    image_size: int | None = None,
    student_options: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    view_options: dict[str, Any] | None = None,
    resume: bool = False,
    allow_changed_data: bool = False,
    **train_options: Any,
) -> Path:
    """Distil ``run``'s frozen backbone into ``student`` (any timm name or selfsight alias) on
    unlabeled images; returns the student's run folder (``backbone.safetensors`` +
    ``backbone.json``, so ``evaluate``, ``export_onnx`` and ``embed`` work on it).

    ``data`` defaults to the teacher's training data. ``options`` override DistillConfig (loss,
    grid_weight, lr, ...), ``student_options`` the student's BackboneConfig or timm kwargs,
    ``view_options`` the view, ``train_options`` any TrainConfig field (time_budget, max_steps,
    precision, devices, ...). ``resume`` refuses changed data unless ``allow_changed_data``."""
    run = Path(run)
    teacher = load_backbone(run)
    distill_cfg = config_from_dict(DistillConfig, options or {}, "distill options")  # fail early
    epochs = choose_epochs(epochs, train_options.get("time_budget"))
    train_cfg = config_from_dict(TrainConfig, {"epochs": epochs, "batch_size": batch_size,
                                               **train_options}, "training options")
    train_cfg, precision = with_resolved_precision(train_cfg)
    student_cfg = student_config(teacher.config, student, image_size, student_options)
    data = teacher_data(run) if data is None else data
    images = load_images(data, split="train", size=student_cfg.image_size,
                         channels=student_cfg.in_chans,
                         progress=train_cfg.progress)
    views = Distiller.default_views(student_cfg.image_size).with_options(view_options)
    with start_run(
            out, f"distill-{student}", data, images, train_cfg, precision,
            lambda: Distiller(teacher, backbone=student_cfg, config=distill_cfg, views=views,
                              batch_size=train_cfg.batch_size, seed=train_cfg.seed,
                              time_budget=train_cfg.time_budget),
            resume, allow_changed_data=allow_changed_data, teacher=str(run),
            teacher_backbone=asdict(teacher.config)) as (student_run, model):  # RUN/.lock held
        fit_and_save(model, images, train_cfg, student_run.root, resume=resume)
    return student_run.root
