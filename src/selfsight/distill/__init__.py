"""Distillation of a pretrained run's backbone into a small, fast student."""

from selfsight.distill.distiller import DistillConfig, Distiller, feature_loss
from selfsight.distill.run import distill, student_config

__all__ = ["DistillConfig", "Distiller", "distill", "feature_loss", "student_config"]
