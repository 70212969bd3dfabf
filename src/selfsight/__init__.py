"""selfsight: self-supervised visual representation learning on unlabeled images, measured.

The public verbs load on first use (PEP 562), so ``import selfsight`` and the command line's
``--help`` stay fast: torch, Lightning, matplotlib and ONNX load only when a verb runs."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# Public name -> the module that defines it.
_PUBLIC = {
    "anomaly_fit": "selfsight.anomaly", "anomaly_score": "selfsight.anomaly",
    "drift": "selfsight.api", "evaluate": "selfsight.api", "explore": "selfsight.api",
    "pretrain": "selfsight.api",
    "Backbone": "selfsight.backbones", "BackboneConfig": "selfsight.backbones",
    "list_backbones": "selfsight.backbone_names", "load_backbone": "selfsight.backbones",
    "finetune": "selfsight.classify", "load_classifier": "selfsight.classify",
    "predict": "selfsight.classify",
    "distill": "selfsight.distill",
    "embed": "selfsight.export", "export_onnx": "selfsight.export",
    "list_methods": "selfsight.methods",
    "report": "selfsight.reports",
    "segment": "selfsight.segment",
}
__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'selfsight' has no attribute '{name}'")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


class _Verbs(types.ModuleType):
    """``selfsight.distill`` and ``selfsight.segment`` are verbs, though packages of the same
    name exist (importing a submodule sets the package attribute): the verb always wins."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("distill", "segment"):
            return getattr(importlib.import_module(f"selfsight.{name}"), name)
        return super().__getattribute__(name)


sys.modules[__name__].__class__ = _Verbs
