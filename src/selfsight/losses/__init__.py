"""Losses, one per file, each tested against a slow reference."""

from selfsight.losses.barlow_twins import barlow_twins
from selfsight.losses.dino import DINOLoss
from selfsight.losses.infonce import infonce
from selfsight.losses.masked_reconstruction import masked_reconstruction, patchify
from selfsight.losses.negative_cosine import negative_cosine
from selfsight.losses.nt_xent import nt_xent
from selfsight.losses.vicreg import vicreg

__all__ = ["DINOLoss", "barlow_twins", "infonce", "masked_reconstruction", "negative_cosine",
           "nt_xent", "patchify", "vicreg"]
