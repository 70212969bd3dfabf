"""One format for everything a run saves that holds weights: a JSON file (what to rebuild and
how it was made) beside a safetensors file (the tensors). Backbones (pretrained or distilled
students), classifiers, anomaly models and segmenters all go through :func:`save_artifact` and
:func:`load_artifact`, so each is written atomically and checked the same way on loading: both
files present, valid JSON, readable tensors, known config keys, weights that fit the model.
Nothing is unpickled, so an artifact from elsewhere cannot run code."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from selfsight.config import config_from_dict
from selfsight.errors import MissingInput, UserError
from selfsight.files import read_json, write_atomic, write_json


@dataclass(frozen=True)
class ArtifactKind:
    what: str  # for messages: "a <what> folder"
    meta_file: str
    weights_file: str
    made_by: str  # the command that writes it

    def describe(self, directory: Path) -> str:
        return f"is {directory} a {self.what} folder written by `{self.made_by}`?"


BACKBONE = ArtifactKind("run", "backbone.json", "backbone.safetensors",
                        "selfsight pretrain` or `selfsight distill")
CLASSIFIER = ArtifactKind("classifier", "classifier.json", "head.safetensors",
                          "selfsight finetune")
ANOMALY_MODEL = ArtifactKind("anomaly model", "anomaly.json", "anomaly.safetensors",
                             "selfsight anomaly fit")
SEGMENTER = ArtifactKind("segmenter", "segmenter.json", "segmenter.safetensors",
                         "selfsight segment --train-segmenter")


def save_artifact(directory: str | Path, kind: ArtifactKind, meta: dict[str, Any],
                  tensors: dict[str, torch.Tensor]) -> Path:
    """Write the tensors, then the JSON (last: a folder with the JSON is complete)."""
    directory = Path(directory)
    plain = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(directory / kind.weights_file, lambda f: f.write(save(plain)))
    write_json(directory / kind.meta_file, meta)
    return directory


def load_artifact(directory: str | Path, kind: ArtifactKind
                  ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(meta, tensors) of a saved artifact; any problem is one UserError naming the file."""
    directory = Path(directory)
    for name in (kind.meta_file, kind.weights_file):
        if not (directory / name).is_file():
            raise MissingInput(f"{directory / name} not found: {kind.describe(directory)}")
    meta = read_json(directory / kind.meta_file, f"a {kind.what} file")
    if not isinstance(meta, dict):
        raise UserError(f"{directory / kind.meta_file}: expected a JSON object, "
                        f"got {type(meta).__name__}")
    return meta, read_safetensors(directory / kind.weights_file)


def read_safetensors(path: Path, label: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (no code can run); a damaged file is one UserError
    naming it (after ``label``, e.g. the flag that named the file)."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{label}{path}: not a readable safetensors file ({error})") from None


def config_from_meta(cls: type, raw: Any, where: Path | str) -> Any:
    """A config dataclass from its saved dict: unknown keys and wrong values are user errors
    that name the file; JSON lists become tuples where the field holds a tuple."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected the {cls.__name__} as a JSON object")
    tuples = {f.name for f in fields(cls) if "tuple" in str(f.type)}
    values = {k: as_tuples(v) if k in tuples else v for k, v in raw.items()}
    try:
        return config_from_dict(cls, values, str(where))
    except (TypeError, ValueError) as error:  # also a config's own checks (__post_init__)
        if str(error).startswith(str(where)):
            raise
        raise UserError(f"{where}: {error}") from None


def as_tuples(value: Any) -> Any:
    """Lists (from JSON) back to tuples, recursively through dicts and lists."""
    if isinstance(value, dict):
        return {k: as_tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(as_tuples(v) for v in value)
    return value


def first_non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or inf, else None (one device
    sync for all of them, not one per tensor)."""
    names = [k for k, v in tensors.items() if v.is_floating_point()]
    if not names:
        return None
    finite = torch.stack([torch.isfinite(tensors[k]).all() for k in names]).cpu()
    return None if bool(finite.all()) else names[int((~finite).nonzero()[0])]


def load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor],
                 where: Path | str) -> None:
    """``module.load_state_dict`` (strict), with a mismatch or a NaN/inf reported as a user
    error: weights from a diverged run would otherwise give NaN features without a word."""
    bad = first_non_finite(tensors)
    if bad is not None:
        raise UserError(f"{where}: holds non-finite weights (NaN/inf) in {bad}; was it saved "
                        "from a run that diverged?")
    try:
        module.load_state_dict(tensors)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise UserError(f"{where}: the weights do not fit the model it describes "
                        f"({' '.join(first[:3])[:300]})") from None
