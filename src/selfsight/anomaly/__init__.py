"""Anomaly and defect detection on self-learned features: PatchCore (Roth et al., 2022)-style
memory banks over any Backbone, pixel maps, thresholds, metrics."""

from selfsight.anomaly.api import anomaly_fit, anomaly_score
from selfsight.anomaly.bank import coreset_size, kcenter_greedy, knn_distance
from selfsight.anomaly.metrics import image_auroc, pixel_auroc, pro_auc, pro_curve
from selfsight.anomaly.model import IMAGE_SCORES, AnomalyConfig, AnomalyModel, Calibration
from selfsight.anomaly.overlay import save_overlay

__all__ = ["IMAGE_SCORES", "AnomalyConfig", "AnomalyModel", "Calibration", "anomaly_fit",
           "anomaly_score", "coreset_size", "image_auroc", "kcenter_greedy", "knn_distance",
           "pixel_auroc", "pro_auc", "pro_curve", "save_overlay"]
