"""Embeddings of signals with a run's signal backbone: pooled features, L2-normalised, float32,
one row per series (per window of a few long recordings), the training split then the test
split, rows named ``NAME-train/i`` and ``NAME-test/i`` as Fashion-MNIST's are."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsight.backbones import Backbone, load_backbone
from selfsight.device import current_precision
from selfsight.errors import UserError
from selfsight.eval.extract import extract_features
from selfsight.file_names import portable_name
from selfsight.files import check_free_space, write_atomic
from selfsight.results import FilesSummary
from selfsight.signals.data import SignalSet, load_signal_splits
from selfsight.signals.names import is_signal_backbone
from selfsight.signals.windows import as_trained

_ROOM = 1 << 20


def signal_features(backbone: Backbone, signals: np.ndarray, batch_size: int = 512,
                    device: str | torch.device | None = None, normalize: bool = True,
                    progress: bool = False) -> torch.Tensor:
    """(N, C, L) float -> (N, D) float32 features on the CPU
    (:func:`selfsight.eval.extract.extract_features` on the (N, 1, L, C) view signals travel
    as); non-finite ones are one UserError line."""
    images = np.asarray(signals, np.float32)[:, :, None, :].transpose(0, 2, 3, 1)
    return extract_features(backbone, images, batch_size, device, normalize, progress)


def every_signal(data: Any, backbone: Backbone) -> SignalSet:
    """The training then the test split of ``data`` (the training split alone when there is no
    test split) as the backbone takes them (:func:`selfsight.signals.windows.as_trained`),
    labels numbered by the training classes: cut into the overlapping windows of the trained
    length when the run trained on windows (rows named ``SERIES@START``), else cropped or padded
    to the trained length; each change said in one line."""
    cfg = backbone.config
    if not is_signal_backbone(cfg.name):
        raise UserError(f"the {cfg.name} backbone is for images; {data} holds signals")
    splits = _present(load_signal_splits(data, own_lengths=True))
    splits[0].check_channels(cfg.in_chans, data)
    why = "as pretrain cut the run's recordings" if cfg.windows else "the run's length"
    shaped = [as_trained(s, cfg.image_size, cfg.windows, why) for s in splits]
    for before, after in zip(splits, shaped, strict=True):
        if after is not before:
            print(f"{_label(data)} ({after.name}): {after.notes[-1]}", file=sys.stderr,
                  flush=True)
    if len(shaped) == 1:
        return shaped[0]
    train, test = shaped
    labels = None if any(s.labels is None for s in shaped) else np.concatenate(
        [s.labels for s in shaped])
    return SignalSet(np.concatenate([s.signals for s in shaped]), labels, train.classes,
                     train.name.rsplit("-", 1)[0], train.skipped + test.skipped,
                     train.notes + test.notes, rows=train.row_names() + test.row_names())


def _present(splits: tuple[SignalSet, SignalSet | None]) -> list[SignalSet]:
    return [s for s in splits if s is not None]


def _label(data: Any) -> str:
    return str(data) if isinstance(data, (str, Path)) else "array"


def embed_signals(run: str | Path, data: Any, out: str | Path, batch_size: int = 512,
                  device: str | None = None, progress: bool = True) -> FilesSummary:
    """:func:`selfsight.export.embed` for signals: ``out`` (.npy) with ``OUT.json`` listing the
    row names and the skipped series."""
    out = Path(out)
    if out.suffix != ".npy":
        raise UserError(f"--out {out}: signal embeddings are written as .npy")
    backbone = load_backbone(run)
    signals = every_signal(data, backbone)
    names = signals.row_names()
    check_free_space(out.parent, len(names) * backbone.dim * 4 + _ROOM,
                     f"the embeddings {out.name} ({len(names)} x {backbone.dim} float32)")
    features = signal_features(backbone, signals.signals, batch_size, device).numpy()
    write_atomic(out, lambda f: np.save(f, features), features.nbytes)
    summary = {"run": portable_name(str(run)), "images": str(data), "out": portable_name(out),
               "count": len(names), "dim": int(features.shape[1]), "dtype": "float32",
               "l2_normalised": True, "precision": current_precision(device).name,
               "skipped_count": len(signals.skipped),
               "skipped": [{"file": f, "reason": r} for f, r in signals.skipped],
               "files": names}
    typed = FilesSummary.from_json(summary)
    typed.save(f"{out}.json")
    typed.files = None
    return typed
