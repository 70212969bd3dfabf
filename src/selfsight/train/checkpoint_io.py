"""Checkpoints written atomically and read without executing pickled code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

import selfsight.files as files
from selfsight.errors import MissingInput, UserError
from selfsight.run_folder import RunFolder


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write through :func:`selfsight.files.write_atomic` (a temporary file, fsync, rename): a
    kill or a full disk mid-write leaves the previous checkpoint intact and no temporary; a full
    disk or a read-only folder is a one-line UserError naming the folder (``torch.save`` itself
    would say ``RuntimeError: [enforce fail ...] unexpected pos``). Lightning re-raises it
    unchanged from ``trainer.fit``, and the CLI prints it as one line. Load with
    ``weights_only=True``: tensors and plain containers only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any = None) -> None:
        files.write_atomic(path, lambda f: torch.save(checkpoint, f))

    @staticmethod
    def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
        """Delete the temporaries that killed writers left in ``run_dir`` and its checkpoints
        folder (a half-written checkpoint is as large as a whole one); a temporary that a live
        process is writing is kept (see :mod:`selfsight.files`). Called when a run starts."""
        run = RunFolder(run_dir)
        return [*files.remove_stale_temporaries(run.root),
                *files.remove_stale_temporaries(run.checkpoint.parent)]

    def load_checkpoint(self, path: Any, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint(path, map_location)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise UserError(f"{path}: not a loadable selfsight checkpoint "
                        f"(only tensors and plain containers are accepted): {err}") from err
