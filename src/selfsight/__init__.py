"""selfsight: self-supervised visual representation learning on unlabeled images, measured."""

from selfsight.anomaly import anomaly_fit, anomaly_score
from selfsight.api import drift, evaluate, explore, pretrain
from selfsight.backbones import Backbone, BackboneConfig, list_backbones, load_backbone
from selfsight.classify import finetune, load_classifier, predict
from selfsight.distill import distill
from selfsight.export import embed, export_onnx
from selfsight.methods import list_methods
from selfsight.reports import report
from selfsight.segment import segment

__all__ = ["Backbone", "BackboneConfig", "anomaly_fit", "anomaly_score", "drift", "evaluate",
           "list_backbones", "list_methods",
           "load_backbone", "pretrain"]
__all__ += ["distill", "embed", "export_onnx"]  # deployment
__all__ += ["explore"]  # unlabelled images: clusters, near-duplicates
__all__ += ["report"]
__all__ += ["segment"]  # instance masks without labels
__all__ += ["finetune", "load_classifier", "predict"]  # a classifier for your labels
__version__ = "0.1.0"
