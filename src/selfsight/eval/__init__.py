"""Measuring a representation: feature extraction, kNN, linear probe, fine-tuning."""

from selfsight.eval.extract import extract_features
from selfsight.eval.finetune import finetune
from selfsight.eval.knn import knn_accuracy, knn_predict
from selfsight.eval.linear import linear_probe

__all__ = ["extract_features", "finetune", "knn_accuracy", "knn_predict", "linear_probe"]
