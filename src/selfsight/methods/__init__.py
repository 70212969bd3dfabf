"""Self-supervised methods, one file each, on the shared ``Method`` base."""

from selfsight.methods import (  # noqa: F401  (each module registers its method)
    barlow_twins,
    byol,
    dino,
    global_local,
    hierarchical,
    mae,
    masked_signal,
    moco_v3,
    rotnet,
    simclr,
    vicreg,
)
from selfsight.methods.base import Method, MethodConfig
from selfsight.methods.registry import create_method, get_method, list_methods, register_method

__all__ = ["Method", "MethodConfig", "create_method", "get_method", "list_methods",
           "register_method"]
