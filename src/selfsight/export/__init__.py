"""Deployment: ONNX export with a parity check, and embeddings of image folders."""

from selfsight.export.embed import embed
from selfsight.export.onnx import export_onnx

__all__ = ["embed", "export_onnx"]
