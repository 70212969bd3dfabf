"""Weights to start self-supervised training from (``selfsight pretrain --init FILE|RUN``).

``FILE`` is a timm / torchvision / Lightning checkpoint (``.pth``, ``.pt``, ``.bin``, ``.ckpt``,
read with ``torch.load(weights_only=True)``, so nothing in it runs) or a ``.safetensors`` file.
Common containers are unwrapped ("state_dict", "model", "module", ...) and the key prefix that
matches the most of the backbone's tensors ("module.", "model.", Lightning's "backbone.model.")
is taken. A classifier head (fc., head., classifier.) has no place in a backbone and is reported
unused. Names that match but shapes that do not fail with one line naming the file and the keys,
except where selfsight builds the model differently from the checkpoint's on purpose:

* the first convolution with another number of input channels (gray images from an RGB
  checkpoint): timm's ``adapt_input_conv`` sums/repeats the filters;
* a ViT's position embedding on another grid, and its patch embedding for another patch size
  (small images get smaller patches): resampled (timm's ``resample_abs_pos_embed`` and
  FlexiViT's ``resample_patch_embed``);
* the small-image stem of a CNN (<= 64 px: a 3x3 first convolution instead of 7x7/2, for
  ``stem_width`` also the stem's norm and the first block's inputs): skipped, reported, and left
  at its fresh initialisation - the rest of the network carries the pretrained features and the
  stem relearns in the first steps (a 7x7 filter cut to 3x3 would not mean the same at stride 1).

A file of which fewer than half of the backbone's tensors could be loaded is refused: it is
another architecture, and training from it would be training from scratch under another name.

``RUN`` is a selfsight run folder (``backbone.json`` + ``backbone.safetensors``): its backbone
must be built the same way (name, channels, stem and timm options); all its tensors load
(continual pretraining on new images).
"""

from __future__ import annotations

import pickle
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from selfsight.artifacts import (
    BACKBONE,
    first_non_finite,
    load_artifact,
    load_weights,
    read_safetensors,
)
from selfsight.backbones import Backbone, BackboneConfig, saved_backbone_config
from selfsight.errors import MissingInput, UserError
from selfsight.run_folder import RunFolder

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Where checkpoints keep their weights, tried in this order (timm's train script, torchvision
# references, Lightning, DINO/MoCo releases).
CONTAINERS = ("state_dict", "model", "module", "model_state", "model_state_dict", "net",
              "network", "teacher")
MIN_FRACTION = 0.5  # of the backbone's tensors a file must fill
SHOWN = 3  # names shown per list in messages and the printed line
RECORDED = 20  # names kept per list in config.yaml


@dataclass
class InitReport:
    """What ``--init`` loaded: ``loaded`` tensors of the backbone's; ``missing`` backbone keys
    the file did not fill, ``unused`` file keys the backbone has no place for, ``skipped`` keys
    whose shapes differ where selfsight builds the stem differently (they start fresh) and
    ``adapted`` keys reshaped to fit (input channels, position-embedding grid)."""

    source: str
    loaded: int
    total: int
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "key (file shape -> model shape)"
    adapted: list[str] = field(default_factory=list)
    prefix: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record config.yaml keeps (counts, and the first names of each list)."""
        out: dict[str, Any] = {"source": self.source, "loaded": self.loaded,
                               "missing": len(self.missing), "unused": len(self.unused)}
        for name in ("missing", "unused", "skipped", "adapted"):
            names = getattr(self, name)
            if names:
                out[f"{name}_keys"] = names[:RECORDED]
        if self.prefix:
            out["prefix"] = self.prefix
        return out

    def lines(self) -> list[str]:
        """One line, plus one per kind of reshaped or skipped key."""
        parts = [f"{len(self.missing)} missing{_names(self.missing)}",
                 f"{len(self.unused)} unused{_names(self.unused)}"]
        lines = [f"init: {self.loaded} tensors from {self.source} ({'; '.join(parts)})"]
        if self.adapted:
            lines.append(f"init: adapted {len(self.adapted)} to fit: {', '.join(self.adapted)}")
        if self.skipped:
            lines.append(f"init: skipped {len(self.skipped)} that selfsight's stem shapes "
                         f"differently, which start fresh: {', '.join(self.skipped[:SHOWN])}"
                         + (", ..." if len(self.skipped) > SHOWN else ""))
        return lines


def _names(keys: list[str]) -> str:
    if not keys:
        return ""
    return ": " + ", ".join(keys[:SHOWN]) + (", ..." if len(keys) > SHOWN else "")


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def load_initial_weights(backbone: Backbone, source: str | Path) -> InitReport:
    """Load ``source`` (a checkpoint file or a selfsight run folder) into ``backbone``."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_run(backbone, path)
    if not path.is_file():
        raise MissingInput(f"--init {path}: not found (expected a checkpoint file: "
                           f"{', '.join(CHECKPOINT_SUFFIXES)}, .safetensors, or a run folder)")
    return _from_file(backbone, path, read_tensors(path))


def init_method(method: Any, source: str | Path) -> InitReport:
    """``load_initial_weights`` into a method's backbone, and its EMA copies (BYOL's target,
    DINO's teacher, ...) start from the same weights."""
    report = load_initial_weights(method.backbone, source)
    for online, target in method.ema_pairs():
        if online is method.backbone:
            target.load_state_dict(online.state_dict())
    return report


# ----- a checkpoint file ----------------------------------------------------------------------
def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from its container; nothing is executed."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        raw: Any = read_safetensors(path, "--init ")
    elif suffix in CHECKPOINT_SUFFIXES:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            raise UserError(f"--init {path}: refused, it holds Python objects beyond tensors "
                            f"that loading would have to run ({first}); save its state_dict "
                            "or a .safetensors file instead") from None
        except (RuntimeError, OSError, EOFError, ValueError) as error:
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            raise UserError(f"--init {path}: not a readable PyTorch checkpoint "
                            f"({type(error).__name__}: {first})") from None
    else:
        raise UserError(f"--init {path}: unknown kind of file; expected "
                        f"{', '.join(CHECKPOINT_SUFFIXES)}, .safetensors or a run folder")
    tensors = unwrap(raw)
    if not tensors:
        raise UserError(f"--init {path}: holds no tensors (expected a state dict, or one under "
                        f"{', '.join(repr(c) for c in CONTAINERS[:3])})")
    return tensors


def unwrap(raw: Any) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint: the first container key holding tensors, else the
    tensors at the top (other entries, e.g. an epoch number or optimizer state, dropped)."""
    for _ in range(4):  # {"model": {"state_dict": ...}} and the like
        if not isinstance(raw, dict):
            return {}
        inner = next((raw[key] for key in CONTAINERS if isinstance(raw.get(key), dict)
                      and _has_tensors(raw[key])), None)
        if inner is None or _count_tensors(raw) > _count_tensors(inner):
            break
        raw = inner
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, torch.Tensor)}


def _has_tensors(value: dict[Any, Any]) -> bool:
    return _count_tensors(value) > 0 or any(isinstance(v, dict) and _has_tensors(v)
                                            for v in value.values())


def _count_tensors(value: dict[Any, Any]) -> int:
    return sum(isinstance(v, torch.Tensor) for v in value.values())


def best_prefix(keys: list[str], wanted: set[str]) -> str:
    """The prefix which, stripped from ``keys``, names the most of ``wanted`` ("" for a plain
    timm state dict, "module." for DataParallel, "backbone.model." for selfsight's own
    checkpoints); on a tie the shortest (an online network before its EMA copy)."""
    counts: Counter[str] = Counter()
    for key in keys:
        parts = key.split(".")
        for i in range(min(4, len(parts))):
            if ".".join(parts[i:]) in wanted:
                counts[".".join(parts[:i]) + "." if i else ""] += 1
    if not counts:
        return ""
    return min(counts, key=lambda p: (-counts[p], len(p), p))


def stem_keys(backbone: Backbone) -> tuple[str, ...]:
    """Prefixes of the tensors selfsight shapes differently from a checkpoint of the same
    model on purpose: the small-image stem, and a ViT's patch embedding and positions."""
    cfg: BackboneConfig = backbone.config
    first = backbone.model.pretrained_cfg.get("first_conv", "conv1")
    first = first[0] if isinstance(first, (list, tuple)) else first
    if cfg.is_vit:
        return (f"{first}.", "pos_embed")
    if not cfg.uses_small_stem:
        return ()
    if cfg.stem_width:
        return (f"{first}.", "bn1.", "layer1.0.conv1.", "layer1.0.downsample.")
    return (f"{first}.",)


def _fit(key: str, value: torch.Tensor, target: torch.Tensor, backbone: Backbone,
         first_conv: str) -> torch.Tensor | None:
    """``value`` reshaped to ``target``'s shape where that keeps its meaning, else None."""
    if key == f"{first_conv}.weight" and value.ndim == 4 and target.ndim == 4 \
            and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]:
        from timm.models import adapt_input_conv

        return adapt_input_conv(target.shape[1], value.float())
    if key == f"{first_conv}.weight" and backbone.is_vit and value.ndim == 4 \
            and value.shape[:2] == target.shape[:2]:  # another patch size (FlexiViT's resize)
        from timm.layers import resample_patch_embed

        return resample_patch_embed(value.float(), list(target.shape[2:]), verbose=False)
    if key == "pos_embed" and value.ndim == 3 and target.ndim == 3 \
            and value.shape[2] == target.shape[2]:
        from timm.layers import resample_abs_pos_embed

        prefix = 0 if getattr(backbone.model, "no_embed_class", False) \
            else backbone.num_prefix_tokens
        grid = backbone.model.patch_embed.grid_size
        try:
            resampled = resample_abs_pos_embed(value.float(), new_size=list(grid),
                                               num_prefix_tokens=prefix, verbose=False)
        except (RuntimeError, ValueError):
            return None
        return resampled if resampled.shape == target.shape else None
    return None


def _from_file(backbone: Backbone, path: Path, tensors: dict[str, torch.Tensor]) -> InitReport:
    own = backbone.model.state_dict()
    prefix = best_prefix(list(tensors), set(own))
    first = backbone.model.pretrained_cfg.get("first_conv", "conv1")
    first = first[0] if isinstance(first, (list, tuple)) else first
    stems = stem_keys(backbone)
    matched: dict[str, torch.Tensor] = {}
    unused, skipped, adapted, wrong = [], [], [], []
    for key, value in tensors.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        if name is None or name not in own:
            unused.append(key)
            continue
        target = own[name]
        if value.shape == target.shape:
            matched[name] = value
            continue
        fitted = _fit(name, value, target, backbone, first)
        if fitted is not None:
            matched[name] = fitted
            adapted.append(f"{name} ({_shape(value)} -> {_shape(target)})")
        elif name.startswith(stems):
            skipped.append(f"{name} ({_shape(value)} -> {_shape(target)})")
        else:
            wrong.append(f"{key} {_shape(value)} (here {_shape(target)})")
    where = f"--init {path}"
    if wrong:
        raise UserError(f"{where}: {len(wrong)} tensors do not fit {backbone.config.name}: "
                        f"{', '.join(wrong[:SHOWN])}{', ...' if len(wrong) > SHOWN else ''}; "
                        "is it a checkpoint of the same architecture and --backbone-set "
                        "options?")
    if len(matched) < MIN_FRACTION * len(own):
        missing = [k for k in own if k not in matched]
        raise UserError(f"{where}: only {len(matched)} of {backbone.config.name}'s {len(own)} "
                        f"tensors found in it (missing e.g. {', '.join(missing[:SHOWN])}; the "
                        f"file has e.g. {', '.join(list(tensors)[:SHOWN])}); is it a "
                        "checkpoint of another architecture?")
    bad = first_non_finite(matched)
    if bad is not None:
        raise UserError(f"{where}: holds non-finite weights (NaN/inf) in {prefix}{bad}")
    with torch.no_grad():
        for name, value in matched.items():
            own[name].copy_(value.to(own[name].dtype))  # state_dict shares the storage
    skipped_names = {s.split(" ")[0] for s in skipped}
    return InitReport(source=str(path), loaded=len(matched), total=len(own),
                      missing=[k for k in own if k not in matched and k not in skipped_names],
                      unused=unused, skipped=skipped, adapted=adapted, prefix=prefix)


# ----- a selfsight run folder -----------------------------------------------------------------
ARCHITECTURE = ("name", "in_chans", "stem_stride", "stem_width", "patch_size", "model_kwargs",
                "standardize")


def _from_run(backbone: Backbone, folder: Path) -> InitReport:
    where = folder / BACKBONE.meta_file
    if not where.is_file():
        raise MissingInput(f"--init {folder}: a folder without {BACKBONE.meta_file}; expected a "
                           "run folder written by `selfsight pretrain` or `selfsight distill`")
    meta, tensors = load_artifact(folder, BACKBONE)
    saved = saved_backbone_config(meta, where)
    mine = backbone.config
    differs = [f"{key} {getattr(saved, key)!r} (here {getattr(mine, key)!r})"
               for key in ARCHITECTURE if getattr(saved, key) != getattr(mine, key)]
    if saved.uses_small_stem != mine.uses_small_stem:
        differs.append(f"small-image stem {saved.uses_small_stem} (here {mine.uses_small_stem};"
                       f" image size {saved.image_size}, here {mine.image_size})")
    if differs:
        raise UserError(f"--init {folder}: its backbone differs from this run's: "
                        f"{'; '.join(differs)}; pass the --backbone and --backbone-set options "
                        "it was trained with")
    load_weights(backbone, tensors, folder / BACKBONE.weights_file)
    return InitReport(source=str(folder), loaded=len(tensors), total=len(tensors))


# ----- what config.yaml records -----------------------------------------------------------------
def initial_weights_record(out: str | Path | None, resume: bool, init: str | Path | None
                           ) -> tuple[dict[str, Any], dict[str, Any], str | Path | None]:
    """(facts for ``start_run``, the record ``build`` fills in, the source to load or None).

    The record is a dict that ``start_run`` writes into config.yaml after calling ``build``, so
    what loaded is filled in by then. A run resumed from its checkpoint loads nothing (the
    checkpoint's weights win) and keeps the record config.yaml already holds; ``init`` is not
    part of the recipe ``--resume`` checks."""
    record: dict[str, Any] = {}
    if resume and out is not None and RunFolder(out).checkpoint.is_file():
        before = RunFolder(out).read_config().get("init")
        if isinstance(before, dict):
            record.update(before)
        if init is not None:
            print(f"note: --init {init} not loaded: {out} continues from its checkpoint",
                  file=sys.stderr)
        return ({"init": record} if record else {}), record, None
    if init is not None and not Path(init).expanduser().exists():  # before loading any data
        raise MissingInput(f"--init {init}: not found (expected a checkpoint file: "
                           f"{', '.join(CHECKPOINT_SUFFIXES)}, .safetensors, or a run folder)")
    return ({"init": record} if init is not None else {}), record, init
