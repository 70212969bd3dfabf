"""PatchCore (Roth et al., 2022, "Towards total recall in industrial anomaly detection") on
signals: a memory bank of the per-time-step features of normal series, the kNN distance of every
time step of a new series to it (the signal's heat map), a series score (the largest step score)
and a threshold from normal data held out of the bank.

A series longer than the backbone's trained length is cut into overlapping windows of that
length (:mod:`selfsight.signals.windows`), each window's step scores upsampled to its length and
stitched back, so one long recording is scored step by step like many short series."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter1d
from tqdm.auto import tqdm

from selfsight.anomaly.bank import coreset_size, kcenter_greedy, knn_distance
from selfsight.anomaly.calibration import held_out_count, threshold_needs
from selfsight.anomaly.features import default_levels, stack_levels
from selfsight.artifacts import ANOMALY_MODEL, config_from_meta, load_artifact, save_artifact
from selfsight.backbones import Backbone, load_backbone
from selfsight.device import autocast, default_device
from selfsight.errors import UserError
from selfsight.files import read_json
from selfsight.signals.names import is_signal_backbone
from selfsight.signals.windows import cut_windows, stitch_windows

KIND = "signals"  # anomaly.json's "kind" for a signal model (image models have none)


@dataclass
class SignalAnomalyConfig:
    """How to build and calibrate the bank of per-step features; saved with the fitted model."""

    levels: list[int] | None = None  # backbone levels; None: the two middle ones (see below)
    neighbourhood: int = 3  # each step's feature averaged with its neighbours (PatchCore's
    # local aggregation, over odd 1-D neighbourhoods; 1: off)
    coreset: float = 0.1  # fraction (<= 1) or number (> 1) of step rows kept by k-center greedy
    projection: int = 128  # random-projection dims for the coreset search
    k: int = 1  # neighbours for a step's score
    overlap: float = 0.5  # fraction of a window shared with the next one
    quantile: float = 0.99  # threshold = this quantile of held-out normal maxima, proposed only
    # when at least max(10, ceil(1 / (1 - quantile))) of them are held out (threshold_needs)
    val_fraction: float = 0.1  # normal series (or of one recording, its tail) held out
    max_rows: int = 40_000  # a random sample of at most this many step rows goes into the
    # coreset search (k-center greedy costs rows x bank size)
    sigma: float | None = None  # smoothing of step scores, in steps; None: window / 56 (the
    # image maps' 4 px per 224 px)
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self) -> None:
        checks = [(0 < self.quantile <= 1, f"quantile must lie in (0, 1], got {self.quantile}"),
                  (0 < self.val_fraction < 1,
                   f"val_fraction must lie in (0, 1), got {self.val_fraction}"),
                  (0 <= self.overlap < 1, f"overlap must lie in [0, 1), got {self.overlap}"),
                  (self.neighbourhood >= 1 and self.neighbourhood % 2 == 1,
                   f"neighbourhood must be an odd number of steps, got {self.neighbourhood}"),
                  (min(self.k, self.max_rows, self.batch_size) >= 1,
                   "k, max_rows and batch_size must be positive"),
                  (self.sigma is None or self.sigma >= 0, f"sigma must be >= 0, got {self.sigma}")]
        for ok, message in checks:
            if not ok:
                raise UserError(message)


@dataclass
class SignalCalibration:
    """What the held-out normal data say: the decision threshold on step and series scores."""

    threshold: float | None = None  # None: too few held out (see threshold_needs)
    held_out: int = 0  # held-out normal series, or windows of one recording's tail
    unit: str = "series"  # "series" or "windows"
    info: dict[str, Any] = field(default_factory=dict)


def signal_levels(backbone: Backbone) -> list[int]:
    """The anomaly code's default levels without repeats: the middle two of the 1-D ResNet's
    three stages; the last of InceptionTime's and PatchTST's two."""
    return sorted(set(default_levels(backbone)))


def is_signal_model(directory: str | Path) -> bool:
    """Whether an anomaly model folder holds a signal model (read without loading weights)."""
    meta = Path(directory) / ANOMALY_MODEL.meta_file
    if not meta.is_file():
        return False
    raw = read_json(meta, "an anomaly model file")
    return isinstance(raw, dict) and raw.get("kind") == KIND


class SignalAnomalyModel:
    """A fitted bank of normal step features: ``step_scores(signals)`` gives (N, T) scores."""

    def __init__(self, backbone: Backbone, config: SignalAnomalyConfig, bank: torch.Tensor,
                 calibration: SignalCalibration | None = None) -> None:
        if not is_signal_backbone(backbone.config.name):
            raise UserError(f"the {backbone.config.name} backbone is for images; signal anomaly "
                            "models need a signal backbone")
        self.backbone = backbone.eval()
        self.config = config
        self.bank = bank  # (M, D)
        self.calibration = calibration or SignalCalibration()

    @property
    def levels(self) -> list[int]:
        return list(self.config.levels or signal_levels(self.backbone))

    @property
    def window(self) -> int:
        return int(self.backbone.config.image_size)

    @property
    def threshold_rule(self) -> str:
        cal, q = self.calibration, self.config.quantile
        unit = "window" if cal.unit == "windows" and cal.held_out == 1 else cal.unit
        if cal.threshold is not None:
            return f"{q} quantile of the largest step scores of {cal.held_out} held-out normal " \
                   f"{unit}"
        return (f"no threshold: {cal.held_out} held-out normal {unit}, the {q} quantile "
                f"needs >= {threshold_needs(q)} (more normal data, or --set quantile=0.9, "
                f"which needs {threshold_needs(0.9)})")

    @classmethod
    def fit(cls, backbone: Backbone, signals: np.ndarray,
            config: SignalAnomalyConfig | None = None, device: str | torch.device | None = None,
            progress: bool = True) -> SignalAnomalyModel:
        """Bank = the step features of normal ``signals`` (N, C, T) float; held out to set the
        threshold: a ``val_fraction`` of the series, or, given one series, its last
        ``val_fraction`` (at least one window), scored as non-overlapping windows."""
        config = config or SignalAnomalyConfig()
        model = cls(backbone, config, torch.empty(0))
        device = default_device(device)
        count, steps, window = len(signals), signals.shape[2], model.window
        if count >= 2:
            order = np.random.default_rng(config.seed).permutation(count)
            n_val = held_out_count(count, config.val_fraction)
            held, bank = signals[np.sort(order[:n_val])], signals[np.sort(order[n_val:])]
        else:
            tail = max(window, round(config.val_fraction * steps))
            if steps - tail < window:
                raise UserError(f"one normal series of {steps} steps: anomaly fit needs at "
                                f"least {2 * window} (windows of the backbone's {window} steps "
                                "for the bank, and one held out to set the threshold)")
            held, bank = signals[:, :, steps - tail:], signals[:, :, :steps - tail]
        rows = model._bank_rows(bank, device, progress)
        size = coreset_size(len(rows), config.coreset)
        model.bank = rows
        if size < len(rows):
            model.bank = rows[kcenter_greedy(rows.to(device), size, config.projection,
                                             config.seed, progress).cpu()].contiguous()
        model.calibration = model._calibrate(held, device, progress)
        model.calibration.info = {"fit_series": count, "bank_series": len(bank),
                                  "step_rows": len(model.bank), "step_rows_searched": len(rows),
                                  "levels": model.levels, "window": window,
                                  "overlap": config.overlap}
        return model

    def _bank_rows(self, signals: np.ndarray, device: torch.device,
                   progress: bool) -> torch.Tensor:
        """(rows, D) step features of every window of ``signals``, sampled to ``max_rows``."""
        rows = [f.reshape(-1, f.shape[-1]).cpu()
                for _, f in self._window_features(signals, device, progress, "bank features")]
        every = torch.cat(rows)
        if len(every) > self.config.max_rows:
            gen = torch.Generator().manual_seed(self.config.seed)
            every = every[torch.randperm(len(every), generator=gen)[:self.config.max_rows]]
        return every

    def _calibrate(self, held: np.ndarray, device: torch.device,
                   progress: bool) -> SignalCalibration:
        scores = self.step_scores(held, device, progress)  # (n, T)
        if len(held) >= 2:
            maxima, unit = scores.max(axis=1), "series"
        else:  # one recording's tail: its non-overlapping windows
            whole = scores.shape[1] // self.window
            maxima = scores[0, :whole * self.window].reshape(whole, self.window).max(axis=1)
            unit = "windows"
        cal = SignalCalibration(held_out=len(maxima), unit=unit)
        if len(maxima) >= threshold_needs(self.config.quantile):
            cal.threshold = float(np.quantile(maxima, self.config.quantile))
        return cal

    # ---------------------------------------------------------------------------------------
    # Scoring

    @torch.no_grad()
    def _window_features(self, signals: np.ndarray, device: torch.device, progress: bool,
                         desc: str) -> Any:
        """Yield ([(series, start, width), ...], (B, L', D) step features) for the windows of
        every series, ``batch_size`` windows at a time."""
        self.backbone.to(device)
        windows = [(i, start, piece) for i, series in enumerate(signals)
                   for start, piece in zip(*cut_windows(series, self.window,
                                                        self.config.overlap), strict=True)]
        size = self.config.batch_size
        for first in tqdm(range(0, len(windows), size), desc=desc, unit="batch",
                          disable=not progress):
            chunk = windows[first:first + size]
            x = torch.from_numpy(np.stack([w for _, _, w in chunk]).astype(np.float32))
            with autocast(device):
                out = self.backbone.features(x.to(device), levels=self.levels)
            maps = stack_levels(out["levels"], self.config.neighbourhood)  # (B, D, 1, L')
            features = maps[:, :, 0].transpose(1, 2).float()  # (B, L', D)
            if not torch.isfinite(features).all():
                raise UserError(f"the {self.backbone.config.name} backbone gives non-finite "
                                f"features for series {chunk[0][0]} to {chunk[-1][0]}")
            yield [(i, s, w.shape[1]) for i, s, w in chunk], features

    def step_scores(self, signals: np.ndarray, device: str | torch.device | None = None,
                    progress: bool = True) -> np.ndarray:
        """(N, C, T) float signals -> (N, T) float32 anomaly scores, one per time step: each
        step's kNN distance to the bank, upsampled from the feature map to the window, stitched
        over overlapping windows (weighted to the windows' centres), Gaussian-smoothed."""
        device = default_device(device)
        bank = self.bank.to(device)
        count, steps = len(signals), signals.shape[2]
        per_series: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(count)]
        for where, features in self._window_features(signals, device, progress,
                                                     "anomaly scores"):
            b, cells, dim = features.shape
            grid = knn_distance(features.reshape(-1, dim), bank,
                                self.config.k).reshape(b, 1, cells).float()  # (B, 1, L')
            width = where[0][2]  # every window of a set has one width: min(window, T)
            if cells != width:
                grid = F.interpolate(grid, size=width, mode="linear", align_corners=False)
            for (i, start, _), row in zip(where, grid[:, 0].cpu().numpy(), strict=True):
                per_series[i].append((start, row))
        sigma = self.config.sigma if self.config.sigma is not None else self.window / 56
        out = np.empty((count, steps), np.float32)
        for i, pieces in enumerate(per_series):
            out[i] = stitch_windows(np.stack([r for _, r in pieces]), [s for s, _ in pieces],
                                    steps)
            if sigma > 0:
                out[i] = gaussian_filter1d(out[i], sigma, mode="nearest")
        return out

    def flag(self, scores: np.ndarray) -> np.ndarray:
        """Scores -> anomalous flags (score >= threshold); none without a threshold."""
        if self.calibration.threshold is None:
            return np.zeros(scores.shape, dtype=bool)
        return scores >= self.calibration.threshold

    # ---------------------------------------------------------------------------------------
    # Saving: safetensors + JSON, never pickle

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        self.backbone.save(directory)
        meta = {"kind": KIND, "config": asdict(self.config),
                "calibration": asdict(self.calibration), **(extra or {})}
        return save_artifact(directory, ANOMALY_MODEL, meta, {"step_bank": self.bank})

    @classmethod
    def load(cls, directory: str | Path) -> SignalAnomalyModel:
        meta, tensors = load_artifact(directory, ANOMALY_MODEL)
        where = Path(directory) / ANOMALY_MODEL.meta_file
        config = config_from_meta(SignalAnomalyConfig, meta.get("config"), where)
        calibration = config_from_meta(SignalCalibration, meta.get("calibration"), where)
        backbone = load_backbone(directory)
        model = cls(backbone, config, tensors.get("step_bank", torch.empty(0)), calibration)
        dims = backbone.level_dims()
        if not all(-len(dims) <= level < len(dims) for level in model.levels):
            raise UserError(f"{where}: levels {model.levels} do not exist in the "
                            f"{len(dims)}-level {backbone.config.name} backbone")
        dim = sum(dims[level] for level in model.levels)
        bank = model.bank
        if bank.ndim != 2 or not len(bank) or bank.shape[1] != dim \
                or not bool(torch.isfinite(bank).all()):
            raise UserError(f"{Path(directory) / ANOMALY_MODEL.weights_file}: step_bank of shape "
                            f"{tuple(bank.shape)} does not fit levels {model.levels} "
                            f"({dim} dims), or holds NaN/inf")
        threshold = calibration.threshold
        if threshold is not None and not np.isfinite(threshold):
            raise UserError(f"{where}: threshold must be a finite number, got {threshold}")
        return model
