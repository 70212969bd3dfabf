"""Starting a training run, the same for ``pretrain`` and ``distill``: the run folder, the
skipped-files list, the seed, the model, and ``config.yaml`` (checked against the saved one
when resuming, so a resumed run continues the same recipe)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml

from selfsight.data import ImageSet, write_skipped_report
from selfsight.device import Precision
from selfsight.errors import UserError
from selfsight.files import write_text
from selfsight.methods import Method
from selfsight.run_folder import RunFolder
from selfsight.train.fit import TrainConfig

RECIPE_KEYS = ("method", "config", "views", "backbone")  # what --resume may not change


def start_run(out: str | Path | None, default_stem: str, data: Any, images: ImageSet,
              train_cfg: TrainConfig, precision: Precision, build: Callable[[], Method],
              resume: bool, **facts: Any) -> tuple[RunFolder, Method]:
    """Make the run folder (``out`` or runs/<default_stem>-<time>), list the skipped files,
    seed, ``build`` the model (after seeding: the same seed builds the same weights) and write
    config.yaml with the data, ``facts``, the training settings and the model's description."""
    run = RunFolder.create(out, default_stem)
    write_skipped_report(images, run.root)
    L.seed_everything(train_cfg.seed, verbose=False)
    model = build()
    resolved = plain({"data": data if isinstance(data, str) else images.name,
                      "num_images": len(images), "skipped_files": len(images.skipped),
                      **facts, "backbone": asdict(model.backbone.config),
                      "train": asdict(train_cfg), "precision_reason": precision.reason,
                      **model.describe(), "torch": str(torch.__version__)})
    check_same_recipe(run, resolved, resume)
    write_text(run.config, yaml.safe_dump(resolved, sort_keys=False))
    return run, model


def check_same_recipe(run: RunFolder, resolved: dict[str, Any], resume: bool) -> None:
    """A resumed run must continue the same recipe; only training budgets may change."""
    if not (resume and run.config.is_file()):
        return
    before = run.read_config()
    changed = [k for k in RECIPE_KEYS if before.get(k) != resolved.get(k)]
    if changed:
        raise UserError(f"{run.config}: --resume with a different {', '.join(changed)} than "
                        "the run was started with; use the original arguments or a new --out")


def plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the YAML is plain and safe_load-able."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
