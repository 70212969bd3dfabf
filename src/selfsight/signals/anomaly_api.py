"""``anomaly fit`` and ``anomaly score`` for a run with a signal backbone: the bank is fitted on
the training split of the normal signals; every series of the scored data (its training then its
test split, each at its own length) gets a score per time step and a series score, and the
highest-scoring ones are drawn (:mod:`selfsight.reports.signal_anomaly`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from selfsight.backbones import Backbone
from selfsight.config import config_from_dict
from selfsight.device import current_precision, default_device
from selfsight.file_names import portable_name
from selfsight.files import check_free_space, write_atomic
from selfsight.reports.signal_anomaly import HANDFUL, save_signal_anomaly, top_rows
from selfsight.results import SignalAnomalyScores
from selfsight.run_folder import RunFolder
from selfsight.signals.anomaly import SignalAnomalyConfig, SignalAnomalyModel
from selfsight.signals.data import load_signal_splits, load_signals

STEP_SCORES = "step_scores.npy"
PICTURE = "top_scores.png"


def _label(data: Any) -> str:
    return str(data) if isinstance(data, (str, Path)) else type(data).__name__


def fit_signal_anomaly(backbone: Backbone, run: str | Path, normal: Any,
                       out: str | Path | None = None, *, device: str | None = None,
                       progress: bool = True, **options: Any) -> Path:
    """:func:`selfsight.anomaly_fit` for signals: ``normal`` is the training split of any
    source :func:`selfsight.signals.data.load_signals` reads (many series, or one long
    recording); ``options`` set :class:`SignalAnomalyConfig` fields."""
    config = config_from_dict(SignalAnomalyConfig, options, "anomaly options")
    signals = load_signals(normal, "train")
    signals.check_channels(backbone.config.in_chans, _label(normal))
    started = time.perf_counter()
    model = SignalAnomalyModel.fit(backbone, signals.signals, config, device=device,
                                   progress=progress)
    info = model.calibration.info
    print(f"memory bank: {info['step_rows']} step rows (coreset {config.coreset} of "
          f"{info['step_rows_searched']}; levels {info['levels']}, windows of "
          f"{info['window']} steps)", file=sys.stderr)
    if model.calibration.threshold is None:
        print(model.threshold_rule, file=sys.stderr)
    out = Path(out) if out is not None else RunFolder(run).anomaly
    return model.save(out, extra={"run": str(run), "normal_signals": _label(normal),
                                  "fit_seconds": round(time.perf_counter() - started, 1),
                                  "precision": current_precision(device).name,
                                  "threshold_rule": model.threshold_rule})


def score_signal_anomaly(model_dir: str | Path, data: Any, out: str | Path | None = None, *,
                         overlays: int = HANDFUL, device: str | None = None,
                         progress: bool = True) -> SignalAnomalyScores:
    """:func:`selfsight.anomaly_score` for signals: OUT/step_scores.npy holds (series, steps)
    float32 scores (NaN past a series' end when the splits differ in length), OUT/scores.json
    each series' score (its largest step score), peak step and flags, and OUT/top_scores.png
    the channels and step scores of the ``min(overlays, HANDFUL)`` highest-scoring series (a
    long recording whole, then its top windows; none for 0)."""
    model = SignalAnomalyModel.load(model_dir)
    started = time.perf_counter()
    splits = [s for s in load_signal_splits(data, own_lengths=True) if s is not None]
    for split in splits:
        split.check_channels(model.backbone.config.in_chans, _label(data))
    out = Path(out) if out is not None else Path(model_dir) / "scores"
    out.mkdir(parents=True, exist_ok=True)
    count, longest = sum(len(s) for s in splits), max(s.length for s in splits)
    check_free_space(out, count * longest * 4 + (1 << 20),
                     f"the step scores ({count} x {longest} float32)")
    scores = np.full((count, longest), np.nan, np.float32)
    names: list[str] = []
    for split in splits:
        first = len(names)
        scores[first:first + len(split), :split.length] = model.step_scores(
            split.signals, device, progress)
        names += split.row_names()
    write_atomic(out / STEP_SCORES, lambda f: np.save(f, scores), scores.nbytes)
    lengths = [s.length for s in splits for _ in range(len(s))]
    results = []
    for name, row, steps in zip(names, scores, lengths, strict=True):
        row = row[:steps]
        flags = model.flag(row)
        results.append({"series": name, "steps": steps, "score": float(row.max()),
                        "peak_step": int(row.argmax()), "anomalous": bool(flags.any()),
                        "flagged_steps": int(flags.sum())})
    cal = model.calibration
    picture = None
    if overlays > 0:
        rows = top_rows([series for split in splits for series in split.signals],
                        [row[:steps] for row, steps in zip(scores, lengths, strict=True)],
                        names, model.window, min(overlays, HANDFUL))
        picture = portable_name(save_signal_anomaly(out / PICTURE, rows, cal.threshold))
    typed = SignalAnomalyScores.from_json({
        "model": str(model_dir), "signals": _label(data), "count": count,
        "steps": int(sum(lengths)), "flagged": sum(r["anomalous"] for r in results),
        "flagged_steps": sum(r["flagged_steps"] for r in results),
        "threshold": cal.threshold, "threshold_rule": model.threshold_rule,
        "window": model.window, "overlap": model.config.overlap,
        "step_scores": portable_name(out / STEP_SCORES), "picture": picture,
        "skipped": [{"series": f, "reason": r} for s in splits for f, r in s.skipped],
        "seconds": round(time.perf_counter() - started, 1),
        "device": str(default_device(device)), "precision": current_precision(device).name,
        "results": results})
    typed.save(out / "scores.json")
    return typed
