"""``evaluate`` for a run with a signal backbone: the image evaluation's measures on labelled
signals (:mod:`selfsight.eval`: kNN, the linear probe, the full sections, label efficiency
against the same architecture trained from scratch), with the field's raw-series baselines in
place of raw pixels: 1-NN under Euclidean distance and under dynamic time warping, DTW 1-NN
being the strong baseline of time-series classification (Bagnall et al., 2017, "The great time
series classification bake off"; Dau et al., 2019, "The UCR time series archive").

The sets are small (BasicMotions trains on 40 series), so every k is capped at the number of
training series and the result names the k used; 1-NN on the embeddings (``knn_k1``) sits
beside the raw 1-NN baselines. Sections that measure images (robustness to image corruptions,
k-means on raw pixels) are left out, each with its reason in ``skipped_sections``."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch

from selfsight.backbones import Backbone
from selfsight.device import current_precision
from selfsight.errors import UserError
from selfsight.eval import extract_features, knn_accuracy, linear_probe
from selfsight.eval.label_efficiency import FinetuneRecipe, label_efficiency
from selfsight.eval.suite import (
    FEW_SHOT_SETTINGS,
    SectionSizes,
    evaluation_sections,
    save_evaluation,
)
from selfsight.progress import stage
from selfsight.results import EvalResult
from selfsight.run_folder import RunFolder
from selfsight.signals.data import SignalSet, channel_stats, load_signal_splits
from selfsight.signals.names import SUFFIXES, is_signal_backbone, is_signal_source

# Training x test series x length^2 cells of the DTW cost matrices: about 20 s of aeon's DTW
# on one core (GunPoint, 50 x 150 x 150^2, takes 2 s); above it, the DTW baseline is skipped.
DTW_CELLS = 2e9
SKIPPED = {"robustness": "image corruptions (noise, blur, JPEG, ...) are defined for images, "
                         "not signals",
           "clustering.pixels": "k-means on raw pixels is for images; the raw-signal baselines "
                                "are raw_euclidean_1nn and raw_dtw_1nn"}


def signal_eval_sets(run: RunFolder, backbone: Backbone, data: Any, labels: Any = None,
                     verbose: bool = True) -> tuple[SignalSet, SignalSet]:
    """(train, test) labelled splits of ``data`` at the backbone's length and channels: its own
    test split, or a stratified 20% of a single labelled split held out (seed 0), as for
    images. A run and data of different kinds (signals, images) are one UserError line."""
    name = backbone.config.name
    if not is_signal_backbone(name):
        raise UserError(f"{run.root}: its backbone ({name}) is for images; {data} holds signals")
    if not is_signal_source(data):
        raise UserError(f"{run.root}: its backbone ({name}) is for signals; {data!r} is not a "
                        f"signal source (uea:NAME, ucr:NAME, a {'/'.join(SUFFIXES)} file or a "
                        "folder of .csv files)")
    if labels is not None:
        raise UserError(f"--labels {labels}: a CSV of labels is for image folders; a signal "
                        "source carries its own labels")
    cfg = backbone.config
    train, test = load_signal_splits(data, length=cfg.image_size, verbose=verbose)
    train.check_channels(cfg.in_chans, data)
    if train.labels is None or (test is not None and test.labels is None):
        raise UserError(f"{data}: evaluation needs labelled series in the training and the test "
                        "split; unlabelled ones are embedded instead (`selfsight embed`)")
    if test is None:
        return held_out(train)
    return train, test


def held_out(signals: SignalSet, fraction: float = 0.2) -> tuple[SignalSet, SignalSet]:
    """A stratified split of one labelled set, seed 0 (scikit-learn's train_test_split)."""
    from sklearn.model_selection import train_test_split

    try:
        kept, held = train_test_split(np.arange(len(signals)), test_size=fraction,
                                      stratify=signals.labels, random_state=0)
    except ValueError as error:  # a class of one series, or too few series to hold any out
        raise UserError(f"{signals.name}: no test split, and {fraction:.0%} cannot be held out "
                        f"by class ({error})") from None
    return signals.subset(np.sort(kept)), signals.subset(np.sort(held))


def raw_signal_baselines(train: SignalSet, test: SignalSet, dtw_cells: float = DTW_CELLS,
                         progress: bool = True) -> dict[str, Any]:
    """1-NN on the raw series, each channel standardised with the training split's mean and
    standard deviation (so no channel outweighs another by its units): Euclidean distance on
    the flattened channels, and aeon's dependent multivariate DTW with a full window when the
    cost matrices stay under ``dtw_cells``."""
    mean, std = (np.asarray(v, np.float64)[None, :, None] for v in channel_stats(train))
    z_train, z_test = ((s.signals - mean) / std for s in (train, test))
    distances = torch.cdist(torch.from_numpy(z_test.reshape(len(test), -1)),
                            torch.from_numpy(z_train.reshape(len(train), -1)))
    result: dict[str, Any] = {"raw_euclidean_1nn": nearest_accuracy(distances.numpy(), train,
                                                                    test)}
    cells = len(train) * len(test) * train.length ** 2
    how = "1-NN on the series standardised per channel (training mean and std): Euclidean"
    if cells > dtw_cells:
        result["raw_baseline"] = (f"{how}; DTW skipped: {cells:.2g} cells of DTW cost matrices, "
                                  f"over the {dtw_cells:.2g} that take about 20 s")
        return result
    with stage(f"DTW 1-NN baseline ({len(test)} x {len(train)} series of {train.length} steps)",
               progress):
        result["raw_dtw_1nn"] = nearest_accuracy(dtw_distances(z_test, z_train), train, test)
    result["raw_baseline"] = f"{how}, and DTW (aeon, dependent, full window)"
    return result


def dtw_distances(queries: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """(Q, N) DTW distances through aeon. Its numba threads can raise torch's thread count in
    this process, so that count is restored after."""
    threads = torch.get_num_threads()
    try:
        from aeon.distances import dtw_pairwise_distance

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numba's casting notes while it compiles
            return dtw_pairwise_distance(queries, bank)
    finally:
        torch.set_num_threads(threads)


def nearest_accuracy(distances: np.ndarray, train: SignalSet, test: SignalSet) -> float:
    """Top-1 of the nearest training series' label, from (test, train) distances."""
    return round(float((train.labels[distances.argmin(1)] == test.labels).mean()), 4)


def evaluate_signals(
    run: RunFolder,
    backbone: Backbone,
    data: Any,
    *,
    labels: Any = None,
    ks: tuple[int, ...] = (20, 200),
    temperature: float = 0.1,
    linear: bool = True,
    raw: bool = True,
    full: bool = True,
    label_fractions: tuple[float, ...] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    recipe: FinetuneRecipe | None = None,
    device: torch.device,
    progress: bool = True,
    sizes: SectionSizes | None = None,
    train_rate: float | None = None,
) -> EvalResult:
    """:func:`selfsight.api.evaluate` on signals, written where it writes (``RUN/eval/<data>``
    ``.json``, ``_predictions.npz`` with ``full``, ``_label_efficiency.json``). ``raw``: the
    raw-series 1-NN baselines; ``train_rate``: the run's training throughput, for ``compute``."""
    train, test = signal_eval_sets(run, backbone, data, labels, progress)
    started = time.perf_counter()
    train_f = extract_features(backbone, train.images, device=device, progress=progress)
    test_f = extract_features(backbone, test.images, device=device, progress=progress)
    y_train, y_test = torch.from_numpy(train.labels), torch.from_numpy(test.labels)
    used = tuple(sorted({1, *(min(k, len(train)) for k in ks)}))
    result: dict[str, Any] = {"run": str(run), "data": str(data), "train_images": len(train),
                              "test_images": len(test), "backbone": backbone.config.name,
                              "precision": current_precision(device).name,
                              "temperature": temperature}
    with stage(f"kNN (k = {', '.join(map(str, used))}: 1-NN as the raw baselines, each k capped "
               f"at the {len(train)} training series) on {len(test)} test series", progress):
        result.update(knn_accuracy(train_f, y_train, test_f, y_test, used, temperature))
    if linear:
        with stage(f"linear probe ({len(train)} training series, L-BFGS)", progress):
            result.update(linear_probe(train_f, y_train, test_f, y_test))
        result["linear_probe"] = "standardised features, softmax, full-batch L-BFGS, wd 1e-5"
    if raw:
        result.update(raw_signal_baselines(train, test, progress=progress))
    predictions = None
    if full:
        sections, predictions = evaluation_sections(backbone, train, test, train_f, test_f,
                                                    device, pixels=False, progress=progress,
                                                    sizes=sizes, robustness=False)
        sections["compute"]["train_images_per_sec"] = train_rate
        skipped = dict(SKIPPED)
        if not sections["few_shot"]:
            fewest = min(n_way for n_way, _ in FEW_SHOT_SETTINGS)
            skipped["few_shot"] = (f"{len(np.unique(test.labels))} test classes: the episodes "
                                   f"need at least {fewest}")
        result.update(sections, skipped_sections=skipped)

    def study() -> dict[str, Any]:
        return label_efficiency(backbone, train, test, tuple(label_fractions), tuple(seeds),
                                recipe, device, progress)

    return save_evaluation(run, data, result, started, predictions,
                           study if label_fractions else None)
