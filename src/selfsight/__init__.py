"""selfsight: self-supervised visual representation learning on unlabeled images, measured."""

from selfsight.api import evaluate, pretrain
from selfsight.backbones import Backbone, BackboneConfig, list_backbones, load_backbone
from selfsight.methods import list_methods

__all__ = ["Backbone", "BackboneConfig", "evaluate", "list_backbones", "list_methods",
           "load_backbone", "pretrain"]
__version__ = "0.1.0"
