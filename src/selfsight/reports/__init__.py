"""``report(run)``: one self-contained HTML page (and its PNG figures) describing a run.

Reads RUN/metrics.jsonl, RUN/config.yaml and RUN/eval/ (``<name>.json``,
``<name>_predictions.npz``, ``<name>_label_efficiency.json``); a figure whose input is absent is
listed, with the reason, in one "Not drawn" card of its section.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from tqdm.auto import tqdm

from selfsight.backbones import alias_of
from selfsight.reports import figures
from selfsight.reports.html import Card, Section, page

__all__ = ["report"]

EMBED_POINTS = 3000
QUERIES = 8
NEIGHBOURS = 8
DUPLICATE_EXAMPLES = 8
SUGGESTIONS_SHOWN = 40

CAPTIONS = {
    "training": "Left: against wall-clock time; right: against images seen. The loss should "
                "fall and flatten; the online kNN accuracy (k=200 on a held-out monitor set) "
                "should rise. A falling loss with a flat kNN curve means the method is learning "
                "something the labels do not care about.",
    "training_loss_only": "Left: against wall-clock time; right: against images seen. The "
                          "loss should fall and flatten. No online kNN was logged (pretrain "
                          "with --knn-every N to add accuracy curves).",
    "embedding": "Each dot is a test image, placed by t-SNE so that images with similar "
                 "features sit close together; colours are the true classes, which the backbone "
                 "never saw. Tight single-colour islands are classes the features separate; "
                 "mixed regions are classes it confuses. Distances between islands mean little.",
    "retrieval": "Left: a query test image; to its right, the test images whose features are "
                 "most similar (cosine similarity under each). Green frame: same class as the "
                 "query; red: a different class. Rows with many red frames show where the "
                 "features group by something other than the class.",
    "label_efficiency": "Test accuracy as the fraction of labelled training images grows (log "
                        "scale): mean over seeds, shaded ± one standard deviation. Points above "
                        "the dashed line beat the network trained from scratch with the largest "
                        "fraction run (normally all the labels). "
                        "Dashed curves, where present: each fine-tuned model distilled into a "
                        "student on the unlabelled training images (SimCLRv2's third step).",
    "confusion": "Row = true class, column = predicted class (kNN, k=20); each row sums to 100%. "
                 "A strong diagonal is good; bright off-diagonal cells show which classes are "
                 "mistaken for which.",
    "per_class": "Test accuracy of each class (kNN, k=20); n is the number of test images of the "
                 "class. The dashed line is the mean over classes: bars far below it are the "
                 "classes the features serve worst.",
    "knn_sweep": "kNN top-1 for each number of neighbours k (rows) and temperature T (columns); "
                 "the orange box marks the best cell. A flat map means the score does not hinge "
                 "on these settings. The headline numbers use T=0.1, fixed in advance, not the "
                 "best cell.",
    "robustness": "Test accuracy as each corruption is applied to the test images at increasing "
                  "severity; severity 0 and the dashed line are the clean accuracy. A line that "
                  "stays flat means the features ignore that corruption.",
    "instances": "Each coloured region is one instance that `selfsight segment` separated, with "
                 "no labels: MaskCut cuts of the backbone's patch features, or the segmenter "
                 "trained on them. Below: how many instances each image got.",
    "explore_clusters": "Each row is a cluster that k-means found in the features, largest "
                        "first; the images are the ones nearest its centre, the cluster's most "
                        "typical members. No labels are used: name the clusters by looking. "
                        "Every image's cluster is in the CSV listed below.",
    "explore_map": "Each dot is an image, placed by t-SNE so that images with similar features "
                   "sit close together, coloured by its cluster (the gallery's frame colours). "
                   "Separate islands are groups the features tell apart; a cluster split "
                   "across islands, or islands shared by clusters, are where k is too small or "
                   "too large.",
    "explore_silhouette": "The mean silhouette (how much closer each image is to its own "
                          "cluster than to the next; 1 is perfect, 0 is no structure) of k-means "
                          "with each number of clusters. The highest was chosen; a flat curve "
                          "means several k describe the images about as well.",
    "explore_retrieval": "Left: an image; to its right, the images whose features are most "
                         "similar (cosine similarity under each). Green frame: the same cluster "
                         "as the image on the left; red: another cluster.",
    "explore_to_label": "The images to label first, in order, as TypiClust picks them (Hacohen "
                        "et al., 2022): the features are split into as many k-means clusters as "
                        "labels to spend, and each pick is the most typical image of one "
                        "cluster, largest first. With few labels this covers every kind of "
                        "image once with a clear example, where a random draw repeats the "
                        "common kinds and spends labels on oddities.",
    "explore_duplicates": "Each column: an image (top) and the image whose features it nearly "
                          "repeats (bottom), cosine similarity above: copies, bursts of the same "
                          "scene, or a re-saved file. Worth removing before training or before "
                          "splitting into train and test.",
    "near_duplicates": "Each column: a test image (top) and the training image whose features "
                       "it nearly repeats (bottom), cosine similarity above. Test images with a "
                       "near-duplicate in the training set make kNN scores partly memory rather "
                       "than generalisation.",
}


def report(run: str | Path, out: str | Path | None = None, progress: bool = True) -> Path:
    """Write RUN/report/index.html (or OUT/index.html) and every figure beside it as a PNG;
    returns the path of the page."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder")
    out = Path(out) if out is not None else run / "report"
    out.mkdir(parents=True, exist_ok=True)
    config = _read_yaml(run / "config.yaml")
    records = read_metrics(run / "metrics.jsonl")
    evals = eval_results(run)
    jobs: list[tuple[Card, Callable[[], Any] | None]] = []
    training = Section("Training")
    training.cards.append(_training_card(records, jobs))
    sections = [training]
    explored = sorted((run / "eval").glob("*_explore.json")) if (run / "eval").is_dir() else []
    if not evals and not explored:
        training.notes.append(f"No evaluation files in {run / 'eval'}: run `selfsight evaluate "
                              f"{run}` (labelled images) to add accuracy, embedding and "
                              f"retrieval figures, or `selfsight explore {run} IMAGES` "
                              "(unlabelled) for clusters and near-duplicates.")
    for name, result in evals.items():
        prefix = "" if len(evals) == 1 else f"{name}_"
        sections.append(eval_section(run, name, result, prefix, jobs))
    for path in explored:
        name = path.stem.removesuffix("_explore")
        sections.append(explore_section(run, name, json.loads(path.read_text()),
                                        "" if len(explored) == 1 else f"{name}_", jobs))
    if (run / "segment" / "summary.json").is_file():
        sections.append(segment_section(run, jobs))
    for card, build in tqdm(jobs, desc="report figures", disable=not progress, unit="figure"):
        if build is not None:
            card.png = figures.save_png(build(), out / f"{card.key}.png")
    title = f"selfsight report: {config.get('method', 'run')}"
    if config.get("backbone", {}).get("name"):
        title += f" \u00b7 {backbone_name(config['backbone'])}"
    html = page(title, f"{run} \u00b7 written {time.strftime('%Y-%m-%d %H:%M')}",
                run_facts(config, records), sections,
                footer="Generated by selfsight report; figures are also saved as PNG files "
                       "beside this page.")
    index = out / "index.html"
    index.write_text(html, encoding="utf-8")
    return index


# --- reading the run -----------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of metrics.jsonl (empty when the file is absent)."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def eval_results(run: Path) -> dict[str, dict[str, Any]]:
    """{name: result} for every evaluation RUN/eval/<name>.json (one with train/test sizes;
    label-efficiency, drift and other files are not evaluation sets)."""
    folder = run / "eval"
    if not folder.is_dir():
        return {}
    found = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    return {name: r for name, r in found.items()
            if isinstance(r, dict) and "test_images" in r
            and not name.endswith("_label_efficiency")}


def backbone_name(config: dict[str, Any]) -> str:
    """The name a user chose: a selfsight alias where the saved config matches one (the saved
    name is the underlying timm model), with that model beside it."""
    alias = alias_of(config)
    return f"{alias} ({config.get('name')})" if alias else str(config.get("name"))


def run_facts(config: dict[str, Any], records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Short facts about the run for the top of the page."""
    facts = []
    backbone = config.get("backbone", {})
    train = config.get("train", {})
    if "method" in config:
        facts.append(("method", str(config["method"])))
    if backbone:
        facts.append(("backbone", f"{backbone_name(backbone)} @ {backbone.get('image_size')} px"))
    if "num_images" in config:
        facts.append(("training images", f"{config['num_images']:,}"))
    if train:
        facts.append(("batch", str(train.get("batch_size"))))
        facts.append(("precision", str(train.get("precision"))))
    if records:
        last = records[-1]
        facts.append(("steps", f"{last.get('step', 0):,}"))
        seen, images = last.get("images_seen"), config.get("num_images")
        # Epochs trained, not the index of the last one begun (a budget stops mid-epoch).
        facts.append(("epochs", f"{seen / images:.1f}" if seen and images
                      else str(last.get("epoch", 0) + 1)))
        facts.append(("images seen", f"{last.get('images_seen', 0):,}"))
        facts.append(("wall clock", f"{last.get('elapsed', 0) / 60:.1f} min"))
        rates = [r["images_per_sec"] for r in records if r.get("images_per_sec")]
        if rates:
            facts.append(("throughput", f"{np.median(rates):,.0f} images/s"))
    return facts


def _missing(name: str, key: str) -> str:
    return f"eval/{name}.json has no {key} section."


def _training_card(records: list[dict[str, Any]],
                   jobs: list[tuple[Card, Callable[[], Any] | None]]) -> Card:
    card = Card("training", "Training curves", CAPTIONS["training"], wide=True)
    if not any("loss" in r for r in records):
        card.note = "No metrics.jsonl with a loss in this run folder."
    elif not any("online_knn" in r for r in records):
        card.caption = CAPTIONS["training_loss_only"]
    jobs.append((card, None if card.note else functools.partial(figures.training_curves,
                                                                 records)))
    return card


def segment_section(run: Path, jobs: list[tuple[Card, Callable[[], Any] | None]]) -> Section:
    """The latest ``selfsight segment`` of this run: examples and instances per image."""
    summary = json.loads((run / "segment" / "summary.json").read_text())
    counts = summary["instances_per_image"]
    section = Section("Instances found without labels")
    section.details = [("images", str(len(counts))), ("method", summary["method"]),
                       ("instances per image (mean)", f"{np.mean(counts):.2f}" if counts else "-"),
                       ("unreadable files skipped", str(summary["skipped"])),
                       ("masks (COCO RLE)", summary["out"])]
    card = Card("instances", "Instances", CAPTIONS["instances"], wide=True)
    examples = run / "segment" / "examples.png"
    if not examples.is_file():
        card.note = f"{examples} is missing."
    jobs.append((card, None if card.note else functools.partial(
        figures.instances, np.asarray(Image.open(examples).convert("RGB")), counts)))
    section.cards.append(card)
    return section


# --- unlabelled images ---------------------------------------------------------------------


def explore_section(run: Path, name: str, result: dict[str, Any], prefix: str,
                    jobs: list[tuple[Card, Callable[[], Any] | None]]) -> Section:
    """Clusters, their typical images, the map, retrieval, the images to label first (with
    ``--suggest``) and near-duplicates of RUN/eval/<name>_explore.json (``selfsight explore``)."""
    section = Section(f"Without labels: {name}")
    arrays = _predictions(run / "eval" / f"{name}_explore.npz")
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
                       ("every image's cluster", str(run / "eval" / f"{name}_clusters.csv")),
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
         lambda: figures.cluster_gallery(images()[1].images, result["clusters"]),
         loaded or no_arrays, wide=True)
    card("map", "Embedding map (t-SNE), coloured by cluster",
         lambda: _embedding(arrays["features"], arrays["cluster"], names,
                            "t-SNE of {n:,} images, coloured by cluster"), no_arrays)
    card("silhouette", "Choosing the number of clusters",
         lambda: figures.silhouette_curve(scores, k),
         None if scores else "The number of clusters was given (--clusters), not chosen.")
    if scores and k == max(scores):
        section.cards[-1].caption += (" The choice is the largest k tried: `selfsight explore` "
                                      "with a larger --max-clusters may find a better one.")
    card("retrieval", "Nearest-neighbour retrieval",
         lambda: _retrieval(arrays["features"], arrays["cluster"], images()[1].images, names),
         no_arrays or loaded, wide=True)
    if picks := result.get("to_label"):
        card("to_label", f"Label these first ({picks['budget']:,} images)",
             lambda: figures.numbered_images(images()[1].images,
                                             picks["rows"][:SUGGESTIONS_SHOWN]),
             loaded, wide=True)
        section.cards[-1].caption += (
            f" {min(picks['budget'], SUGGESTIONS_SHOWN)} of {picks['budget']:,} shown; all of "
            f"them in {picks['file']}"
            + (f"; they cover {picks['classes_covered']} of the source's classes."
               if "classes_covered" in picks else "."))
    card("duplicates", "Near-duplicates among the images",
         lambda: figures.duplicate_pairs(images()[1].images, images()[1].images,
                                         distinct_pairs(dups["examples"], DUPLICATE_EXAMPLES),
                                         names=("image", "near copy")),
         loaded or ("No near-duplicate pairs above the threshold." if not dups.get("examples")
                    else None), wide=True)
    return section


def _explore_images(run: Path, result: dict[str, Any]) -> Any:
    """(None, every image explored) in the order of the arrays file, shaped like
    :func:`_eval_images` so the same checks apply, or the error that stopped them loading."""
    from selfsight.backbones import load_backbone
    from selfsight.data import load_every_image

    try:
        cfg = load_backbone(run).config
        return None, load_every_image(result["data"], cfg.image_size, cfg.in_chans,
                                      progress=False)
    except (ValueError, FileNotFoundError, KeyError) as err:
        return err


def add_card(section: Section, jobs: list[tuple[Card, Callable[[], Any] | None]], key: str,
             title: str, caption: str, build: Callable[[], Any] | None, note: str | None,
             wide: bool = False) -> Card:
    """A card in ``section`` whose figure ``build`` draws later (not when ``note`` says why it
    cannot be drawn)."""
    c = Card(key, title, caption, note=note, wide=wide)
    jobs.append((c, None if note else build))
    section.cards.append(c)
    return c


# --- one evaluation set --------------------------------------------------------------------


def eval_section(run: Path, name: str, result: dict[str, Any], prefix: str,
                 jobs: list[tuple[Card, Callable[[], Any] | None]]) -> Section:
    """Headline numbers, figures and details of RUN/eval/<name>.json and its companions."""
    section = Section(f"Evaluation on {name}")
    efficiency_file = run / "eval" / f"{name}_label_efficiency.json"
    efficiency = json.loads(efficiency_file.read_text()) if efficiency_file.is_file() else None
    predictions = _predictions(run / "eval" / f"{name}_predictions.npz")
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
         lambda: figures.confusion_matrix(np.array(per_class["confusion"]),
                                          per_class["classes"]),
         None if per_class else _missing(name, "per_class"))
    card("retrieval", "Nearest-neighbour retrieval",
         lambda: _retrieval(predictions["test_features"], predictions["test_labels"],
                            images()[1].images, classes()),
         no_pred or _images_problem(images, predictions), wide=True)
    card("per_class", "Per-class accuracy",
         lambda: figures.per_class_accuracy(per_class["classes"], per_class["accuracy"],
                                            per_class.get("test_counts")),
         None if per_class else _missing(name, "per_class"))
    card("label_efficiency", "Label efficiency",
         lambda: figures.label_efficiency_curve(efficiency),
         None if efficiency else f"No eval/{name}_label_efficiency.json.",
         extra=f" Savings factor {efficiency['savings_factor']:.3g}\u00d7: "
               f"{efficiency.get('savings_note', '')}"
         if efficiency and efficiency.get("savings_factor") else "")
    if efficiency:
        section.cards[-1].table = efficiency_table(efficiency)
    card("knn_sweep", "kNN settings sweep",
         lambda: figures.knn_sweep_heatmap(sweep["ks"], sweep["temperatures"],
                                           np.array(sweep["top1"])),
         None if sweep else _missing(name, "knn_sweep"))
    card("robustness", "Robustness to corruptions",
         lambda: figures.robustness_curves(robust),
         None if robust else _missing(name, "robustness"),
         extra=f" Classifier: {robust['classifier']}." if robust and robust.get("classifier")
         else "")
    dup_note = _missing(name, "near_duplicates") if not dups else (
        "No near-duplicate pairs above the threshold." if not dups.get("examples") else
        _images_problem(images, None))
    card("near_duplicates", "Near-duplicates between test and train",
         lambda: figures.duplicate_pairs(images()[1].images, images()[0].images,
                                         distinct_pairs(dups["examples"], DUPLICATE_EXAMPLES)),
         dup_note, wide=True,
         extra=_duplicates_summary(dups) if dups else "")
    if not (per_class or sweep or robust):
        section.notes.append(f"A quick evaluation (kNN and linear probe only): `selfsight "
                             f"evaluate {run} --data {result.get('data')}` without --quick adds "
                             "the figures listed under Not drawn.")
    return section


def distinct_pairs(examples: list[list[float]], limit: int) -> list[list[float]]:
    """The most similar (test, train, similarity) examples, one per test image."""
    seen: set[int] = set()
    chosen = []
    for example in sorted(examples, key=lambda e: -e[2]):
        if int(example[0]) not in seen:
            seen.add(int(example[0]))
            chosen.append(example)
    return chosen[:limit]


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


def _predictions(path: Path) -> dict[str, np.ndarray] | None:
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
        return load_eval_sets(result["data"], cfg.image_size, cfg.in_chans)
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
    """t-SNE of a sample spread over the labels; ``title`` may use {n}, the points drawn."""
    rows = figures.spread_sample(labels, EMBED_POINTS)
    points = figures.tsne_2d(features[rows])
    return figures.embedding_map(points, labels[rows], classes,
                                 title.format(n=len(rows)) if title else None)


def _retrieval(features: np.ndarray, labels: np.ndarray, images: np.ndarray,
               classes: list[str]) -> Any:
    queries = figures.pick_queries(labels, QUERIES)
    neighbours, sims = figures.nearest_neighbours(features, queries, NEIGHBOURS)
    return figures.retrieval_grid(images, labels, classes, queries, neighbours, sims)


# --- tables --------------------------------------------------------------------------------


def _num(value: Any) -> str:
    return "\u2013" if value is None else f"{value:.3f}"


def headline_rows(result: dict[str, Any], efficiency: dict[str, Any] | None,
                  ) -> list[tuple[str, str, str, float | None]]:
    """(metric, this backbone, raw pixels, gain over pixels) for the table atop a section."""
    rows: list[tuple[str, str, str, float | None]] = []

    def gain(ours: float | None, pixels: float | None) -> float | None:
        return None if ours is None or pixels is None else ours - pixels

    for k in (20, 200):
        if f"knn_k{k}" in result:
            ours, pixels = result[f"knn_k{k}"], result.get(f"pixels_knn_k{k}")
            rows.append((f"kNN top-1, k={k}", _num(ours), _num(pixels), gain(ours, pixels)))
    if "linear_top1" in result:
        rows.append(("linear probe top-1", _num(result["linear_top1"]), "\u2013", None))
    clustering = result.get("clustering")
    if clustering:
        pixels = clustering.get("pixels") or {}

        def triple(c: dict[str, Any]) -> str:
            return " / ".join(_num(c.get(m)) for m in ("accuracy", "nmi", "ari")) if c \
                else "\u2013"
        seeds = clustering.get("seeds") or [None]  # older results: one k-means seed
        spread = clustering.get("std", {}).get("accuracy")
        ours = triple(clustering) + ("" if spread is None else f" (acc \u00b1 {spread:.3f})")
        rows.append((f"k-means ({clustering.get('n_clusters')} clusters"
                     + (f", mean of {len(seeds)} seeds" if len(seeds) > 1 else "")
                     + "): acc / NMI / ARI", ours, triple(pixels),
                     gain(clustering.get("accuracy"), pixels.get("accuracy"))))
    for shot in result.get("few_shot", []):
        rows.append((f"few-shot {shot['n_way']}-way {shot['k_shot']}-shot "
                     f"({shot['episodes']} episodes)",
                     f"{shot['mean']:.3f} \u00b1 {shot['ci95']:.3f}", "\u2013", None))
    factor = (efficiency or {}).get("savings_factor")
    if factor:  # else the details say why there is none
        bound = "\u2264 " if efficiency.get("savings_upper_bound") else ""
        rows.append(("label savings factor vs scratch", f"{bound}{factor:.3g}\u00d7", "\u2013",
                     None))
    return rows


def efficiency_table(study: dict[str, Any]) -> list[tuple[str, ...]]:
    """The label-efficiency study as numbers under its curve: per fraction, each arm's mean ±
    std over seeds and the fine-tuned arm's gain over scratch in points."""
    mean, std = study.get("mean", {}), study.get("std", {})
    arms = [a for a in ("pretrained", "scratch", "linear", "pretrained_distilled",
                        "scratch_distilled") if a in mean]
    names = {"pretrained": "fine-tuned", "scratch": "from scratch", "linear": "linear probe",
             "pretrained_distilled": "distilled", "scratch_distilled": "scratch distilled"}
    rows: list[tuple[str, ...]] = [("labels", *(names[a] for a in arms), "gain")]
    images = study.get("train_images")
    for fraction in study.get("fractions", []):
        key = str(fraction)
        count = "" if not images else (f" ({images:,})" if float(fraction) == 1
                                       else f" (\u2248{round(float(fraction) * images):,})")

        def cell(arm: str, key: str = key) -> str:
            if key not in mean[arm]:
                return "\u2013"
            spread = std.get(arm, {}).get(key)
            return f"{mean[arm][key]:.3f}" + ("" if spread is None else f" \u00b1 {spread:.3f}")
        ours, theirs = mean.get("pretrained", {}).get(key), mean.get("scratch", {}).get(key)
        gain = "\u2013" if ours is None or theirs is None else \
            f"{100 * (ours - theirs):+.1f} pts".replace("-", "\u2212")
        rows.append((f"{100 * float(fraction):g}%{count}", *(cell(a) for a in arms), gain))
    return rows


def detail_rows(result: dict[str, Any],
                efficiency: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Smaller facts under the figures: data, sizes, recipes, compute."""
    rows = [("data", str(result.get("data"))),
            ("images", f"{result.get('train_images', 0):,} train / "
                       f"{result.get('test_images', 0):,} test")]
    if "temperature" in result:
        rows.append(("kNN", f"cosine, weighted vote exp(sim/T), T={result['temperature']}"))
    if "linear_probe" in result:
        rows.append(("linear probe", str(result["linear_probe"])))
    if efficiency is not None:
        rows.append(("label efficiency", f"{efficiency.get('recipe', '')}; seeds "
                                         f"{efficiency.get('seeds')}"))
        for arm, chosen in efficiency.get("budgets", {}).items():
            folds = max((b.get("folds", 1) for b in chosen.values() if "validation" in b),
                        default=0)
            how = {0: "", 1: " (chosen on a validation hold-out of the labels)"}.get(
                folds, f" (chosen by {folds}-fold cross-validation on the labels)")
            rows.append((f"{arm} fine-tuning steps", ", ".join(
                f"{float(f):.0%}: {b['steps']}" for f, b in chosen.items()) + how))
        if not efficiency.get("savings_factor") and efficiency.get("savings_note"):
            rows.append(("savings factor", str(efficiency["savings_note"])))
    compute = result.get("compute")
    if compute:
        rate = compute.get("train_images_per_sec")
        rows.append(("compute", f"inference {compute['inference_ms_per_image']:.3g} ms/image "
                                f"(batch {compute['batch_size']}, {compute['device']})"
                                + (f"; training {rate:,.0f} images/s" if rate else "")))
    if "eval_seconds" in result:
        rows.append(("evaluation time", f"{result['eval_seconds']} s"))
    return rows
