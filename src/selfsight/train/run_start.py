"""Starting a training run, the same for ``pretrain`` and ``distill``: the run folder and its
lock, the skipped-files list, the seed, the model, and ``config.yaml`` (checked against the saved
one when resuming, so a resumed run continues the same recipe on the same data)."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
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

RECIPE_KEYS = ("method", "config", "views", "backbone")  # what --resume may not change...
# ...except these method options: they steer how the weights move, not what they mean, and a
# lower learning rate or a longer warm-up is how a run that diverged continues from its last good
# checkpoint (train.callbacks.OptimizerSettingsFromConfig applies them over the restored
# optimizer). Not here: the optimizer itself (its saved state would not fit another one), and
# what defines the objective (temperatures, loss weights, mask ratio): the weights would stay
# usable, but config.yaml could then describe neither half of the run.
RESUMABLE_OPTIONS = frozenset({
    "lr", "weight_decay", "weight_decay_end", "momentum", "lars_eta", "betas", "warmup",
    "final_lr_ratio", "ema_momentum", "ema_momentum_end",
})
# Set by a process launcher in every process of a distributed run; only the first one locks
# (the others are the same run, started by it).
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID",
                  "SLURM_NODEID", "JSM_NAMESPACE_RANK")


@contextmanager
def start_run(out: str | Path | None, default_stem: str, data: Any, images: ImageSet,
              train_cfg: TrainConfig, precision: Precision, build: Callable[[], Method],
              resume: bool, *, allow_changed_data: bool = False,
              **facts: Any) -> Iterator[tuple[RunFolder, Method]]:
    """Make the run folder (``out`` or runs/<default_stem>-<time>) and hold its lock for the
    whole ``with`` block (the training), list the skipped files, seed, ``build`` the model
    (after seeding: the same seed builds the same weights) and write config.yaml with the data
    and its fingerprint, ``facts``, the training settings and the model's description. On
    ``resume`` the recipe and the data must be those the run started with (changed data only
    with ``allow_changed_data``)."""
    run = RunFolder.create(out, default_stem)
    with run.lock() if first_process() else nullcontext():
        L.seed_everything(train_cfg.seed, verbose=False)
        model = build()
        resolved = plain({"data": data if isinstance(data, str) else images.name,
                          "num_images": len(images), "skipped_files": len(images.skipped),
                          "data_fingerprint": data_fingerprint(data, images),
                          **facts, "backbone": asdict(model.backbone.config),
                          "train": asdict(train_cfg), "precision_reason": precision.reason,
                          **model.describe(), "torch": str(torch.__version__)})
        check_same_recipe(run, resolved, resume)
        check_same_data(run, resolved, resume, allow_changed_data)
        write_skipped_report(images, run.root)  # nothing written before the checks pass
        write_text(run.config, yaml.safe_dump(resolved, sort_keys=False))
        yield run, model


def first_process() -> bool:
    """False in the second and later processes of a distributed launch."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "0").strip() or "0"
        if value.lstrip("-").isdigit() and int(value) != 0:
            return False
    return True


def data_fingerprint(data: Any, images: ImageSet) -> dict[str, Any]:
    """What identifies the training data without reading it again: the image count, and for a
    folder the SHA-256 of its sorted file list (relative to the folder), so added, removed or
    renamed files show on ``--resume``."""
    fingerprint: dict[str, Any] = {"images": len(images)}
    if images.files and isinstance(data, (str, os.PathLike)):
        root = Path(data).expanduser()
        names = []
        for file in images.files:
            path = Path(file)
            names.append(path.relative_to(root).as_posix() if path.is_relative_to(root)
                         else path.as_posix())
        fingerprint["files_sha256"] = hashlib.sha256(
            "\n".join(sorted(names)).encode("utf-8", "surrogateescape")).hexdigest()
    return fingerprint


def check_same_data(run: RunFolder, resolved: dict[str, Any], resume: bool,
                    allow_changed: bool = False) -> None:
    """A resumed run must train on the data it started with: more or fewer images change the
    schedule (steps per epoch) and the recorded image count. ``allow_changed`` continues anyway,
    with a note."""
    if not (resume and run.config.is_file()):
        return
    before = run.read_config()
    old = before.get("data_fingerprint")
    if not isinstance(old, dict):  # a run from before fingerprints: its image count
        if not isinstance(before.get("num_images"), int):
            return
        old = {"images": before["num_images"]}
    new = resolved["data_fingerprint"]
    change = data_change(old, new)
    if change is None:
        return
    where = f"{resolved.get('data')}"
    if allow_changed:
        print(f"note: {where}: the training data changed since {run} started ({change}); "
              "continuing on the new data (--allow-changed-data)", file=sys.stderr)
        return
    raise UserError(f"{where}: the training data changed since {run} started ({change}); "
                    "resuming would train on other images with another schedule. Pass "
                    "--allow-changed-data to continue anyway, or use a new --out")


def data_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """How the fingerprint ``new`` differs from ``old``, in words (the net count of files added
    or removed); None when it does not."""
    was, now = old.get("images"), new.get("images")
    if isinstance(was, int) and isinstance(now, int) and was != now:
        kind = "files" if "files_sha256" in new else "images"
        return f"{was} -> {now} {kind}: {abs(now - was)} {'added' if now > was else 'removed'}"
    if old.get("files_sha256") and new.get("files_sha256") \
            and old["files_sha256"] != new["files_sha256"]:
        return f"{now} files as before, but not the same ones (renamed or replaced)"
    return None


def check_same_recipe(run: RunFolder, resolved: dict[str, Any], resume: bool) -> None:
    """A resumed run must continue the same recipe; only training budgets and the optimisation
    settings in ``RESUMABLE_OPTIONS`` may change."""
    if not (resume and run.config.is_file()):
        return
    changed = recipe_changes(run.read_config(), resolved)
    if changed:
        raise UserError(f"{run.config}: --resume with a different {', '.join(changed)} than "
                        "the run was started with; use the original arguments or a new --out "
                        f"(--resume may change only {', '.join(sorted(RESUMABLE_OPTIONS))} and "
                        "the training budgets)")


def recipe_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two config.yaml's recipes: a whole key of ``RECIPE_KEYS``, or for
    the method's options each one outside ``RESUMABLE_OPTIONS`` with its old and new value."""
    changed = []
    for key in RECIPE_KEYS:
        old, new = before.get(key), after.get(key)
        if key == "config" and isinstance(old, dict) and isinstance(new, dict):
            changed += [f"method option {name} ({old.get(name)!r}, now {new.get(name)!r})"
                        for name in sorted((old.keys() | new.keys()) - RESUMABLE_OPTIONS)
                        if old.get(name) != new.get(name)]
        elif old != new:
            changed.append(key)
    return changed


def plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the YAML is plain and safe_load-able."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
