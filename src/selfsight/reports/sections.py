"""The sections of the report page and their cards: the training curves, one evaluation set,
one set of unlabelled images explored, and the instances segmented. Each card's figure is
queued, not drawn, so the page can draw them all under one progress bar."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from selfsight.eval.embedding_map import embed_sample
from selfsight.eval.neighbours import distinct_pairs, query_neighbours
from selfsight.files import read_json
from selfsight.reports import charts, mosaics
from selfsight.reports.captions import CAPTIONS
from selfsight.reports.html import Card, Section
from selfsight.results import EvalResult, ExploreResult, LabelEfficiency
from selfsight.run_folder import RunFolder
from selfsight.summaries import detail_rows, efficiency_rows, headline_rows

# How much each figure shows: points on a map, retrieval rows and columns, pairs, picks.
EMBED_POINTS = 3000
QUERIES = 8
NEIGHBOURS = 8
DUPLICATE_EXAMPLES = 8
SUGGESTIONS_SHOWN = 40

# Cards whose figure is still to draw, with the function that draws it (None: not drawn).
Jobs = list[tuple[Card, Callable[[], Any] | None]]


def add_card(section: Section, jobs: Jobs, key: str, title: str, caption: str,
             build: Callable[[], Any] | None, note: str | None, wide: bool = False) -> Card:
    """A card in ``section`` whose figure ``build`` draws later (not when ``note`` says why it
    cannot be drawn)."""
    c = Card(key, title, caption, note=note, wide=wide)
    jobs.append((c, None if note else build))
    section.cards.append(c)
    return c


def _missing(name: str, key: str) -> str:
    return f"eval/{name}.json has no {key} section."


def training_card(records: list[dict[str, Any]], jobs: Jobs) -> Card:
    """The training curves of metrics.jsonl, or a note saying why they cannot be drawn."""
    card = Card("training", "Training curves", CAPTIONS["training"], wide=True)
    if not any("loss" in r for r in records):
        card.note = "No metrics.jsonl with a loss in this run folder."
    elif not any("online_knn" in r for r in records):
        card.caption = CAPTIONS["training_loss_only"]
    jobs.append((card, None if card.note else functools.partial(charts.training_curves,
                                                                records)))
    return card


def segment_section(run: Path, jobs: Jobs) -> Section:
    """The latest ``selfsight segment`` of this run: examples and instances per image."""
    summary = read_json(RunFolder(run).segment_summary)
    counts = summary["instances_per_image"]
    section = Section("Instances found without labels")
    section.details = [("images", str(len(counts))), ("method", summary["method"]),
                       ("instances per image (mean)", f"{np.mean(counts):.2f}" if counts else "-"),
                       ("unreadable files skipped", str(summary["skipped"])),
                       ("masks (COCO RLE)", summary["out"])]
    card = Card("instances", "Instances", CAPTIONS["instances"], wide=True)
    examples = RunFolder(run).segment_dir / "examples.png"
    if not examples.is_file():
        card.note = f"{examples} is missing."
    jobs.append((card, None if card.note else functools.partial(
        mosaics.instances, np.asarray(Image.open(examples).convert("RGB")), counts)))
    section.cards.append(card)
    return section


# --- unlabelled images ---------------------------------------------------------------------


def explore_section(run: Path, name: str, result: ExploreResult, prefix: str,
                    jobs: Jobs) -> Section:
    """Clusters, their typical images, the map, retrieval, the images to label first (with
    ``--suggest``) and near-duplicates of RUN/eval/<name>_explore.json (``selfsight explore``)."""
    section = Section(f"Without labels: {name}")
    arrays = _predictions(RunFolder(run).evaluation(name, "_explore.npz"))
    images = functools.cache(lambda: _explore_images(run, result))
    k, scores = result["n_clusters"], {int(k): v for k, v in result["silhouette"].items()}
    dups = result["near_duplicates"]
    section.headline = [(m, v, "\u2013", None) for m, v in [
        ("images", f"{result['images']:,}"),
        ("clusters", f"{k} (silhouette {scores[k]:.3f})" if k in scores else f"{k} (given)"),
        ("near-duplicate pairs", f"{dups['pairs']:,}")]]
    if agreement := result.get("agreement_with_labels"):
        section.headline.append((f"agreement with the {agreement['classes']} labels: NMI / ARI",
                                 f"{agreement['nmi']:.3f} / {agreement['ari']:.3f}", "\u2013",
                                 None))
    section.details = [("data", str(result["data"])), ("clusters", f"k-means on L2-normalised "
                        f"features, k {result['chosen_by']}"),
                       ("every image's cluster",
                        str(RunFolder(run).evaluation(name, "_clusters.csv"))),
                       ("unreadable files skipped", str(result.get("skipped_files", 0))),
                       ("time", f"{result.get('explore_seconds')} s")]
    no_arrays = None if arrays is not None else f"No eval/{name}_explore.npz."
    loaded = None if no_arrays else _images_problem(images, {"test_labels": arrays["cluster"]})
    names = [f"cluster {c}" for c in range(k)]

    def card(key: str, title: str, build: Callable[[], Any], note: str | None,
             wide: bool = False) -> None:
        add_card(section, jobs, f"{prefix}explore_{key}", title, CAPTIONS[f"explore_{key}"],
                 build, note, wide)

    card("clusters", "Clusters and their most typical images",
         lambda: mosaics.cluster_gallery(images()[1].images, result["clusters"]),
         loaded or no_arrays, wide=True)
    card("map", "Embedding map (t-SNE), coloured by cluster",
         lambda: _embedding(arrays["features"], arrays["cluster"], names,
                            "t-SNE of {n:,} images, coloured by cluster"), no_arrays)
    card("silhouette", "Choosing the number of clusters",
         lambda: charts.silhouette_curve(scores, k),
         None if scores else "The number of clusters was given (--clusters), not chosen.")
    if scores and k == max(scores):
        section.cards[-1].caption += (" The choice is the largest k tried: `selfsight explore` "
                                      "with a larger --max-clusters may find a better one.")
    card("retrieval", "Nearest-neighbour retrieval",
         lambda: _retrieval(arrays["features"], arrays["cluster"], images()[1].images, names),
         no_arrays or loaded, wide=True)
    if picks := result.get("to_label"):
        card("to_label", f"Label these first ({picks['budget']:,} images)",
             lambda: mosaics.numbered_images(images()[1].images,
                                             picks["rows"][:SUGGESTIONS_SHOWN]),
             loaded, wide=True)
        section.cards[-1].caption += (
            f" {min(picks['budget'], SUGGESTIONS_SHOWN)} of {picks['budget']:,} shown; all of "
            f"them in {picks['file']}"
            + (f"; they cover {picks['classes_covered']} of the source's classes."
               if "classes_covered" in picks else "."))
    card("duplicates", "Near-duplicates among the images",
         lambda: mosaics.duplicate_pairs(images()[1].images, images()[1].images,
                                         distinct_pairs(dups["examples"], DUPLICATE_EXAMPLES),
                                         names=("image", "near copy")),
         loaded or ("No near-duplicate pairs above the threshold." if not dups.get("examples")
                    else None), wide=True)
    return section


def _explore_images(run: Path, result: dict[str, Any]) -> Any:
    """(None, every image explored) in the order of the arrays file, shaped like
    :func:`_eval_images` so the same checks apply, or the error that stopped them loading.
    Signals come as the series drawn as line plots (:mod:`selfsight.reports.signal_tiles`)."""
    from selfsight.backbones import load_backbone
    from selfsight.data import load_every_image
    from selfsight.signals.names import is_signal_backbone

    try:
        backbone = load_backbone(run)
        cfg = backbone.config
        if is_signal_backbone(cfg.name):
            from selfsight.reports.signal_tiles import DrawnSignals
            from selfsight.signals.embed import every_signal  # the rows explore embedded

            return None, DrawnSignals(every_signal(result["data"], backbone))
        return None, load_every_image(result["data"], cfg.image_size, cfg.in_chans,
                                      progress=False)
    except (ValueError, FileNotFoundError, KeyError) as err:
        return err


# --- one evaluation set --------------------------------------------------------------------


def eval_section(run: Path, name: str, result: EvalResult, prefix: str, jobs: Jobs,
                 ) -> Section:
    """Headline numbers, figures and details of RUN/eval/<name>.json and its companions."""
    section = Section(f"Evaluation on {name}")
    efficiency_file = RunFolder(run).evaluation(name, "_label_efficiency.json")
    efficiency = LabelEfficiency.load(efficiency_file) if efficiency_file.is_file() else None
    predictions = _predictions(RunFolder(run).evaluation(name, "_predictions.npz"))
    images = functools.cache(lambda: _eval_images(run, result))
    section.headline = headline_rows(result, efficiency)
    section.details = detail_rows(result, efficiency)
    classes = functools.cache(lambda: _class_names(result, predictions, images))

    def card(key: str, title: str, build: Callable[[], Any] | None, note: str | None,
             wide: bool = False, extra: str = "") -> None:
        add_card(section, jobs, prefix + key, title, CAPTIONS[key] + extra, build, note, wide)

    no_pred = None if predictions is not None else \
        f"No eval/{name}_predictions.npz (test features and kNN predictions)."
    per_class = result.get("per_class")
    sweep = result.get("knn_sweep")
    robust = result.get("robustness")
    dups = result.get("near_duplicates")
    # Order: half-width cards in pairs between the wide ones, so the grid has no holes.
    card("embedding", "Embedding map (t-SNE)",
         lambda: _embedding(predictions["test_features"], predictions["test_labels"],
                            classes()), no_pred)
    card("confusion", "Confusion matrix",
         lambda: charts.confusion_matrix(np.array(per_class["confusion"]),
                                         per_class["classes"]),
         None if per_class else _missing(name, "per_class"))
    card("retrieval", "Nearest-neighbour retrieval",
         lambda: _retrieval(predictions["test_features"], predictions["test_labels"],
                            images()[1].images, classes()),
         no_pred or _images_problem(images, predictions), wide=True)
    card("per_class", "Per-class accuracy",
         lambda: charts.per_class_accuracy(per_class["classes"], per_class["accuracy"],
                                           per_class.get("test_counts")),
         None if per_class else _missing(name, "per_class"))
    card("label_efficiency", "Label efficiency",
         lambda: charts.label_efficiency_curve(efficiency),
         None if efficiency else f"No eval/{name}_label_efficiency.json.",
         extra=f" Savings factor {efficiency['savings_factor']:.3g}\u00d7: "
               f"{efficiency.get('savings_note', '')}"
         if efficiency and efficiency.get("savings_factor") else "")
    if efficiency:
        section.cards[-1].table = efficiency_rows(efficiency)
    card("knn_sweep", "kNN settings sweep",
         lambda: charts.knn_sweep_heatmap(sweep["ks"], sweep["temperatures"],
                                          np.array(sweep["top1"])),
         None if sweep else _missing(name, "knn_sweep"))
    card("robustness", "Robustness to corruptions",
         lambda: charts.robustness_curves(robust),
         None if robust else _missing(name, "robustness"),
         extra=f" Classifier: {robust['classifier']}." if robust and robust.get("classifier")
         else "")
    dup_note = _missing(name, "near_duplicates") if not dups else (
        "No near-duplicate pairs above the threshold." if not dups.get("examples") else
        _images_problem(images, None))
    card("near_duplicates", "Near-duplicates between test and train",
         lambda: mosaics.duplicate_pairs(images()[1].images, images()[0].images,
                                         distinct_pairs(dups["examples"], DUPLICATE_EXAMPLES)),
         dup_note, wide=True,
         extra=_duplicates_summary(dups) if dups else "")
    if not (per_class or sweep or robust):
        section.notes.append(f"A quick evaluation (kNN and linear probe only): `selfsight "
                             f"evaluate {run} --data {result.get('data')}` without --quick adds "
                             "the figures listed under Not drawn.")
    return section


def _duplicates_summary(dups: dict[str, Any]) -> str:
    """One sentence from whichever counts the near_duplicates section has."""
    across = dups.get("test_in_train", dups.get("pairs"))
    parts = [f" Cosine threshold {dups.get('threshold', 0):g}:"]
    if across is not None:
        parts.append(f"{across:,} test/train pairs")
    for key, where in (("train_pairs", "within the training set"),
                       ("test_pairs", "within the test set")):
        if dups.get(key) is not None:
            parts.append(f"{dups[key]:,} pairs {where}")
    return parts[0] + " " + "; ".join(parts[1:]) + "." if len(parts) > 1 else ""


# --- loading what the figures show ---------------------------------------------------------


def _predictions(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz file, or None when it is absent."""
    if not path.is_file():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _eval_images(run: Path, result: dict[str, Any]) -> Any:
    """(train, test) ImageSets of the evaluation, in the order the predictions file uses, or
    the error that stopped them loading."""
    from selfsight.backbones import load_backbone
    from selfsight.data import load_eval_sets  # the same split evaluate() scored

    try:
        cfg = load_backbone(run).config
        return load_eval_sets(result["data"], cfg.image_size, cfg.in_chans, progress=False)
    except (ValueError, FileNotFoundError, KeyError) as err:
        return err


def _images_problem(images: Callable[[], Any], predictions: dict | None) -> str | None:
    loaded = images()
    if isinstance(loaded, Exception):
        return f"Could not reload the evaluation images ({loaded})."
    if predictions is not None and len(loaded[1]) != len(predictions["test_labels"]):
        return (f"The saved features have {len(predictions['test_labels'])} rows but the "
                f"images now number {len(loaded[1])}: the data changed since.")
    return None


def _class_names(result: dict[str, Any], predictions: dict | None,
                 images: Callable[[], Any]) -> list[str]:
    if result.get("per_class"):
        return list(result["per_class"]["classes"])
    loaded = images()
    if not isinstance(loaded, Exception) and loaded[1].classes:
        return list(loaded[1].classes)
    n = int(predictions["test_labels"].max()) + 1 if predictions is not None else 0
    return [str(i) for i in range(n)]


def _embedding(features: np.ndarray, labels: np.ndarray, classes: list[str],
               title: str | None = None) -> Any:
    """The t-SNE map of a sample spread over the labels; ``title`` may use {n}, the points
    drawn."""
    rows, points = embed_sample(features, labels, EMBED_POINTS)
    return charts.embedding_map(points, labels[rows], classes,
                                title.format(n=len(rows)) if title else None)


def _retrieval(features: np.ndarray, labels: np.ndarray, images: np.ndarray,
               classes: list[str]) -> Any:
    """The retrieval grid: query images, one per label first, and their nearest neighbours."""
    queries, neighbours, sims = query_neighbours(features, labels, QUERIES, NEIGHBOURS)
    return mosaics.retrieval_grid(images, labels, classes, queries, neighbours, sims)


