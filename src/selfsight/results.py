"""What every verb returns and writes, as typed records with a JSON round trip (no torch here).

A record's fields are declared in the order its JSON file lists them, so ``to_json`` writes the
same file the verbs always wrote; ``from_json`` reads one back (keys a record does not name are
kept in ``extra``, so an older or newer file survives the round trip). Sections that only the
figures read (a kNN sweep grid, a confusion matrix) stay plain dicts. The JSON keys still index a
record (``result["knn_k20"]``, ``dict(result)``), as they index the files.

One formatter (:mod:`selfsight.summaries`) turns these records into the rows that both the
command line and the HTML report show.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from selfsight.files import read_json, write_json

R = TypeVar("R", bound="Record")


# Field metadata. KEEP_NONE: written as null when None (other fields are left out when None).
# {"prefix": P}: a {k: value} field written as one "<P><k>" key per entry (e.g. knn_k20).
KEEP_NONE = {"keep_none": True}


@dataclass
class Record(Mapping):
    """Base of every result: ``to_json`` / ``from_json`` / ``save`` / ``load``; read-only, it
    is also the mapping of its JSON."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                continue
            if prefix := f.metadata.get("prefix"):
                out.update({f"{prefix}{k}": v for k, v in value.items()})
            elif value is not None or f.metadata.get("keep_none"):
                out[f.name] = _plain(value)
        return {**out, **self.extra}

    @classmethod
    def from_json(cls: type[R], raw: dict[str, Any]) -> R:
        hints = typing.get_type_hints(cls)
        named = {f.name: f for f in fields(cls) if f.name != "extra"}
        patterns = {f.name: re.compile(re.escape(f.metadata["prefix"]) + r"(\d+)$")
                    for f in named.values() if "prefix" in f.metadata}
        values: dict[str, Any] = {name: {} for name in patterns}
        extra: dict[str, Any] = {}
        for key, value in raw.items():
            if key in named and key not in patterns:
                values[key] = _typed(hints[key], value)
                continue
            for name, pattern in patterns.items():
                if m := pattern.match(key):
                    values[name][int(m.group(1))] = value
                    break
            else:
                extra[key] = value
        return cls(**values, extra=extra)

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        raw = read_json(path, f"a {cls.__name__} file")
        if not isinstance(raw, dict):
            from selfsight.errors import UserError
            raise UserError(f"{path}: expected a JSON object")
        return cls.from_json(raw)

    # The JSON keys index a record as they index its file.
    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _typed(hint: Any, value: Any) -> Any:
    """A JSON value as the field's type: dicts to records, lists of dicts to lists of records."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if isinstance(option, type) and issubclass(option, Record) and isinstance(value, dict):
            return option.from_json(value)
        if typing.get_origin(option) is list and isinstance(value, list):
            (item,) = typing.get_args(option)
            if isinstance(item, type) and issubclass(item, Record):
                return [item.from_json(v) if isinstance(v, dict) else v for v in value]
    return value


# --- evaluate -------------------------------------------------------------------------------

@dataclass
class FewShot(Record):
    n_way: int
    k_shot: int
    n_query: int | None = None
    episodes: int | None = None
    mean: float = 0.0
    ci95: float = 0.0


@dataclass
class Clustering(Record):
    """k-means on the features (mean over seeds), against the labels."""

    n_clusters: int | None = None
    items: int | None = None
    seeds: list[int] | None = None
    accuracy: float | None = None
    nmi: float | None = None
    ari: float | None = None
    std: dict[str, float] | None = None
    per_seed: list[dict[str, Any]] | None = None
    pixels: Clustering | None = None  # the same on raw pixels
    subsample: str | None = None


@dataclass
class Robustness(Record):
    """kNN accuracy on clean and corrupted test images, per corruption and severity."""

    classifier: str | None = None
    subsample: str | None = None
    clean: float = 0.0
    severities: list[int] | None = None
    corruptions: dict[str, list[float]] | None = None
    mean_corrupted: float | None = None

    def worst(self) -> tuple[str, float]:
        """The corruption whose highest severity costs most, and its accuracy there."""
        accuracy, name = min((accs[-1], name) for name, accs in (self.corruptions or {}).items())
        return name, accuracy


@dataclass
class Compute(Record):
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 0
    latency_ms_batch1: float | None = None
    inference_ms_per_image: float = 0.0
    train_images_per_sec: float | None = field(default=None, metadata=KEEP_NONE)


@dataclass
class LabelEfficiency(Record):
    """Fine-tuning from the backbone against training from scratch on label fractions
    (``RUN/eval/<data>_label_efficiency.json``): per arm, mean and std over seeds."""

    fractions: list[float] | None = None
    seeds: list[int] | None = None
    recipe: str = ""
    train_images: int | None = None
    test_images: int | None = None
    arms: dict[str, Any] | None = None
    mean: dict[str, dict[str, float]] | None = None
    std: dict[str, dict[str, float]] | None = None
    budgets: dict[str, dict[str, dict[str, Any]]] | None = None
    savings_factor: float | None = field(default=None, metadata=KEEP_NONE)
    savings_note: str | None = None
    savings_upper_bound: bool | None = None


@dataclass
class EvalResult(Record):
    """``selfsight evaluate``: ``RUN/eval/<data>.json``."""

    run: str = ""
    data: str = ""
    train_images: int = 0
    test_images: int = 0
    backbone: str = ""
    precision: str | None = None
    temperature: float | None = None
    knn: dict[int, float] = field(default_factory=dict, metadata={"prefix": "knn_k"})
    linear_top1: float | None = None
    linear_train_top1: float | None = None
    linear_probe: str | None = None
    # the raw-pixel baseline
    pixels_knn: dict[int, float] = field(default_factory=dict, metadata={"prefix": "pixels_knn_k"})
    # the raw-signal baselines (signals): 1-NN on the standardised series, and how
    raw_euclidean_1nn: float | None = None
    raw_dtw_1nn: float | None = None
    raw_baseline: str | None = None
    knn_sweep: dict[str, Any] | None = None
    few_shot: list[FewShot] | None = None
    clustering: Clustering | None = None
    robustness: Robustness | None = None
    per_class: dict[str, Any] | None = None
    near_duplicates: dict[str, Any] | None = None
    compute: Compute | None = None
    skipped_sections: dict[str, str] | None = None  # section: why it was not run
    eval_seconds: float | None = None
    label_efficiency: LabelEfficiency | None = None  # returned, written to its own file


# --- explore, drift -------------------------------------------------------------------------

@dataclass
class Cluster(Record):
    cluster: int
    size: int
    mean_similarity: float | None = None
    typical: list[int] | None = None  # rows nearest the centre


@dataclass
class ExploreResult(Record):
    """``selfsight explore``: ``RUN/eval/<data>_explore.json``."""

    run: str = ""
    data: str = ""
    images: int = 0
    precision: str | None = None
    skipped_files: int = 0
    n_clusters: int = 0
    chosen_by: str = ""
    silhouette: dict[str, float] | None = None  # by k (as text, JSON keys)
    clusters: list[Cluster] | None = None
    near_duplicates: dict[str, Any] | None = None
    agreement_with_labels: dict[str, Any] | None = None
    to_label: dict[str, Any] | None = None
    explore_seconds: float | None = None


@dataclass
class DriftResult(Record):
    """``selfsight drift``: ``RUN/eval/drift.json``."""

    reference: str = ""
    current: str = ""
    precision: str | None = None
    mmd2: float = 0.0
    p_value: float = 1.0
    null_mmd2_95: float = 0.0
    reference_items: int | None = None
    current_items: int | None = None
    permutations: int | None = None


# --- finetune, predict, embed, anomaly, export, segment --------------------------------------

@dataclass
class FinetuneResult(Record):
    """``selfsight finetune``: ``classifier.json`` beside the classifier's weights."""

    run: str = ""
    data: str = ""
    backbone: str | None = None  # a signal backbone counts series, not images
    classes: list[str] | None = None
    labelled_images: int = 0
    fraction: float = 1.0
    seed: int = 0
    recipe: dict[str, Any] | None = None
    views: str | None = None  # the augmentation fine-tuning trained on, in words
    steps: dict[str, Any] | None = None  # chosen, and how
    distilled_on_images: int | None = field(default=None, metadata=KEEP_NONE)
    test_images: int = 0
    precision: str | None = None
    test_top1: float = 0.0
    per_class: dict[str, Any] | None = None


@dataclass
class FilesSummary(Record):
    """What ``predict`` and ``embed`` wrote for a pile of images (``OUT.json``)."""

    run: str | None = None
    classifier: str | None = None
    images: str = ""
    out: str = ""
    count: int = 0
    dim: int | None = None
    dtype: str | None = None
    l2_normalised: bool | None = None
    counts: dict[str, int] | None = None
    skipped_count: int = 0
    precision: str | None = None
    skipped: list[dict[str, str]] | None = None
    files: list[str] | None = None


@dataclass
class AnomalyScores(Record):
    """``selfsight anomaly score``: ``scores.json``."""

    model: str = ""
    images: str = ""
    count: int = 0
    flagged: int = 0
    image_score: str = ""
    threshold: float | None = field(default=None, metadata=KEEP_NONE)
    pixel_threshold: float | None = field(default=None, metadata=KEEP_NONE)
    threshold_rule: str = ""
    skipped_files: list[str] | None = None
    seconds: float | None = None
    device: str | None = None
    precision: str | None = None
    results: list[dict[str, Any]] | None = None


@dataclass
class SignalAnomalyScores(Record):
    """``selfsight anomaly score`` on signals: ``scores.json`` beside ``step_scores.npy``."""

    model: str = ""
    signals: str = ""
    count: int = 0
    steps: int = 0
    flagged: int = 0
    flagged_steps: int = 0
    threshold: float | None = field(default=None, metadata=KEEP_NONE)
    threshold_rule: str = ""
    window: int = 0
    overlap: float = 0.0
    step_scores: str = ""
    picture: str | None = None  # top_scores.png: the highest-scoring series drawn
    skipped: list[dict[str, str]] | None = None
    seconds: float | None = None
    device: str | None = None
    precision: str | None = None
    results: list[dict[str, Any]] | None = None


@dataclass
class ExportResult(Record):
    """``selfsight export``: ``export.json`` beside the model."""

    run: str = ""
    model: str = ""
    backbone: str = ""
    opset: int | None = None
    exporter: str | None = None
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    preprocessing: str | None = None
    precision: str | None = None
    versions: dict[str, str] | None = None
    parity: dict[str, Any] | None = None
    latency_ms_per_image: dict[str, Any] | None = None


@dataclass
class SegmentResult(Record):
    """``selfsight segment``: the masks file (COCO RLE per instance, per image)."""

    run: str = ""
    images: str = ""
    method: str = ""
    working_size: int | None = None
    precision: str | None = None
    pseudo_masks: dict[str, Any] | None = None
    segmenter_history: Any = field(default=None, metadata=KEEP_NONE)
    skipped: list[Any] | None = None
    results: list[dict[str, Any]] | None = None

    @property
    def instances(self) -> int:
        return sum(len(r["instances"]) for r in self.results or [])
