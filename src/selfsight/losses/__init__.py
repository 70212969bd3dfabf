"""Losses, one per file, each tested against a slow reference."""

from selfsight.losses.nt_xent import nt_xent

__all__ = ["nt_xent"]
