"""Measuring a representation: feature extraction, kNN, linear probe."""

from selfsight.eval.extract import extract_features
from selfsight.eval.knn import knn_accuracy, knn_predict
from selfsight.eval.linear import linear_probe

__all__ = ["extract_features", "knn_accuracy", "knn_predict", "linear_probe"]
