"""Lightning wiring: data loading by global step, callbacks, atomic checkpoints, ``fit``."""
