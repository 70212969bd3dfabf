"""Self-supervised methods, one file each, on the shared ``Method`` base."""

from selfsight.methods import simclr  # noqa: F401  (registers)
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import create_method, get_method, list_methods, register_method

__all__ = ["Method", "MethodConfig", "create_method", "get_method", "list_methods",
           "register_method"]
