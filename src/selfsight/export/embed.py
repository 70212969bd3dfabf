"""Embeddings of a folder (or any image source) for downstream use: pooled backbone features,
L2-normalised, float32, one row per readable image (PROTOCOL.md's evaluation features)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from selfsight.backbones import load_backbone
from selfsight.data import load_every_image
from selfsight.device import current_precision, runs_at_precision
from selfsight.errors import UserError
from selfsight.eval.extract import extract_features
from selfsight.file_names import portable_name
from selfsight.files import check_free_space, write_atomic
from selfsight.results import FilesSummary
from selfsight.signals.names import is_signal_source

FORMATS = (".npy", ".parquet")
_ROOM = 1 << 20  # bytes beyond the array's: the header, the file names of a parquet


def _require_pyarrow(path: Path) -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise UserError(f"{path}: writing .parquet needs pyarrow (pip install pyarrow); "
                        "or write .npy (names go to a .json sidecar)") from None
    return pyarrow


def _write_parquet(path: Path, names: list[str], features: np.ndarray) -> None:
    pa = _require_pyarrow(path)
    column = pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1)), features.shape[1])
    table = pa.table({"file": names, "embedding": column})
    write_atomic(path, lambda f: pa.parquet.write_table(table, f), features.nbytes)


@runs_at_precision
def embed(
    run: str | Path,
    images: Any,
    out: str | Path,
    batch_size: int = 512,
    device: str | None = None,
    progress: bool = True,
) -> FilesSummary:
    """Embed every readable image of ``images`` (a folder, 'fashion-mnist', an array) with the
    run's backbone and write ``out``: ``.npy`` (N, D) float32 rows, or ``.parquet`` with columns
    ``file`` and ``embedding`` (needs pyarrow). ``OUT.json`` beside it lists the file names in row
    order and every skipped (unreadable) file with its reason. Returns that summary. File names
    (the JSON's and the parquet ``file`` column) are written as
    :func:`selfsight.files.portable_name` writes them."""
    if is_signal_source(images):  # sensor signals and time series
        from selfsight.signals.embed import embed_signals

        return embed_signals(run, images, out, batch_size, device, progress)
    out = Path(out)
    if out.suffix not in FORMATS:
        raise UserError(f"--out {out}: unknown format '{out.suffix}'; valid: {list(FORMATS)}")
    backbone = load_backbone(run)
    cfg = backbone.config
    data = load_every_image(images, cfg.image_size, cfg.in_chans, progress)
    names = [portable_name(name) for name in data.row_names()]
    if out.suffix == ".parquet":
        _require_pyarrow(out)  # fail before the slow part
    check_free_space(out.parent, len(names) * backbone.dim * 4 + _ROOM,
                     f"the embeddings {out.name} ({len(names)} x {backbone.dim} float32)")
    features = extract_features(backbone, data.images, batch_size=batch_size, device=device,
                                normalize=True, progress=progress).numpy().astype(np.float32)
    if out.suffix == ".npy":  # atomic: a full disk or a kill leaves no truncated file
        write_atomic(out, lambda f: np.save(f, features), features.nbytes)
    else:
        _write_parquet(out, names, features)
    source = str(images) if isinstance(images, (str, Path)) else data.name
    summary = {"run": portable_name(str(run)), "images": portable_name(source),
               "out": portable_name(out), "count": len(names),
               "dim": int(features.shape[1]), "dtype": "float32", "l2_normalised": True,
               "precision": current_precision(device).name,
               "skipped_count": len(data.skipped),
               "skipped": [{"file": portable_name(f), "reason": r} for f, r in data.skipped],
               "files": names}
    typed = FilesSummary.from_json(summary)
    typed.save(f"{out}.json")
    typed.files = None  # in the file; a caller has them in its own order already
    return typed
