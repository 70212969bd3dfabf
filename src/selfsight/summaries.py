"""The one formatter of results: the rows and lines that both the command line and the HTML
report show, read from the typed records of :mod:`selfsight.results` (no torch here).

The report puts ``headline_rows`` atop an evaluation section, ``efficiency_rows`` under the
label-efficiency curve and ``detail_rows`` under the figures; the command line prints the same
rows as text (:func:`text_table`) and one short summary per verb (:func:`summary_lines`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatch
from typing import Any

from selfsight.results import (
    AnomalyScores,
    DriftResult,
    EvalResult,
    ExploreResult,
    ExportResult,
    FinetuneResult,
    LabelEfficiency,
    Record,
    SegmentResult,
    SignalAnomalyScores,
)
from selfsight.signals.names import is_signal_backbone

DASH = "\u2013"
ARM_NAMES = {"pretrained": "fine-tuned", "scratch": "from scratch", "linear": "linear probe",
             "pretrained_distilled": "distilled", "scratch_distilled": "scratch distilled"}


def unit(backbone: str, plural: bool = False) -> str:
    """What one input of a run with ``backbone`` is called in a printed line: a series for a
    signal backbone, an image otherwise."""
    if is_signal_backbone(backbone):
        return "series"
    return "images" if plural else "image"


def number(value: float | None) -> str:
    return DASH if value is None else f"{value:.3f}"


def headline_rows(result: EvalResult, efficiency: LabelEfficiency | None,
                  ) -> list[tuple[str, str, str, float | None]]:
    """(metric, this backbone, raw pixels, gain over pixels): the numbers atop a section."""
    rows: list[tuple[str, str, str, float | None]] = []

    def gain(ours: float | None, pixels: float | None) -> float | None:
        return None if ours is None or pixels is None else ours - pixels

    for k in sorted(result.knn):
        ours, pixels = result.knn[k], result.pixels_knn.get(k)
        rows.append((f"kNN top-1, k={k}", number(ours), number(pixels), gain(ours, pixels)))
    if result.linear_top1 is not None:
        rows.append(("linear probe top-1", number(result.linear_top1), DASH, None))
    if c := result.clustering:
        pixels = c.pixels

        def triple(scores: Any) -> str:
            return " / ".join(number(getattr(scores, m)) for m in ("accuracy", "nmi", "ari")) \
                if scores else DASH
        spread = (c.std or {}).get("accuracy")
        seeds = len(c.seeds or [])
        rows.append((f"k-means ({c.n_clusters} clusters"
                     + (f", mean of {seeds} seeds" if seeds > 1 else "") + "): acc / NMI / ARI",
                     triple(c) + ("" if spread is None else f" (acc \u00b1 {spread:.3f})"),
                     triple(pixels), gain(c.accuracy, pixels.accuracy if pixels else None)))
    for shot in result.few_shot or []:
        rows.append((f"few-shot {shot.n_way}-way {shot.k_shot}-shot ({shot.episodes} episodes)",
                     f"{shot.mean:.3f} \u00b1 {shot.ci95:.3f}", DASH, None))
    if r := result.robustness:
        name, accuracy = r.worst()
        rows.append((f"kNN on corrupted test images: clean / mean / worst "
                     f"({name.replace('_', ' ')} at severity {r.severities[-1]})",
                     f"{number(r.clean)} / {number(r.mean_corrupted)} / {number(accuracy)}",
                     DASH, None))
    if efficiency is not None and efficiency.savings_factor:  # else the details say why not
        bound = "\u2264 " if efficiency.savings_upper_bound else ""
        rows.append(("label savings factor vs scratch",
                     f"{bound}{efficiency.savings_factor:.3g}\u00d7", DASH, None))
    return rows


def efficiency_rows(study: LabelEfficiency) -> list[tuple[str, ...]]:
    """The label-efficiency study as numbers: per fraction, each arm's mean ± std over seeds
    and the fine-tuned arm's gain over scratch in points; the header row first."""
    mean, std = study.mean or {}, study.std or {}
    arms = [a for a in ARM_NAMES if a in mean]
    rows: list[tuple[str, ...]] = [("labels", *(ARM_NAMES[a] for a in arms), "gain")]
    images = study.train_images
    for fraction in study.fractions or []:
        key = str(fraction)
        count = "" if not images else (f" ({images:,})" if float(fraction) == 1
                                       else f" (\u2248{round(float(fraction) * images):,})")

        def cell(arm: str, key: str = key) -> str:
            if key not in mean[arm]:
                return DASH
            spread = std.get(arm, {}).get(key)
            return f"{mean[arm][key]:.3f}" + ("" if spread is None else f" \u00b1 {spread:.3f}")
        ours = mean.get("pretrained", {}).get(key)
        theirs = mean.get("scratch", {}).get(key)
        gain = DASH if ours is None or theirs is None else \
            f"{100 * (ours - theirs):+.1f} pts".replace("-", "\u2212")
        rows.append((f"{100 * float(fraction):g}%{count}", *(cell(a) for a in arms), gain))
    return rows


def chosen_steps(budgets: dict[str, dict[str, Any]] | None) -> list[tuple[str, str]]:
    """Per arm, the fine-tuning steps chosen for each label fraction, and how."""
    rows = []
    for arm, chosen in (budgets or {}).items():
        folds = max((b.get("folds", 1) for b in chosen.values() if "validation" in b), default=0)
        how = {0: "", 1: " (chosen on a validation hold-out of the labels)"}.get(
            folds, f" (chosen by {folds}-fold cross-validation on the labels)")
        rows.append((f"{arm} fine-tuning steps", ", ".join(
            f"{float(f):.0%}: {b['steps']}" for f, b in chosen.items()) + how))
    return rows


def detail_rows(result: EvalResult, efficiency: LabelEfficiency | None
                ) -> list[tuple[str, str]]:
    """Smaller facts under the figures: data, sizes, recipes, compute."""
    rows = [("data", result.data),
            (unit(result.backbone, plural=True),
             f"{result.train_images:,} train / {result.test_images:,} test")]
    if result.temperature is not None:
        rows.append(("kNN", f"cosine, weighted vote exp(sim/T), T={result.temperature}"))
    if result.linear_probe:
        rows.append(("linear probe", result.linear_probe))
    if efficiency is not None:
        rows.append(("label efficiency", f"{efficiency.recipe}; seeds {efficiency.seeds}"))
        rows += chosen_steps(efficiency.budgets)
        if not efficiency.savings_factor and efficiency.savings_note:
            rows.append(("savings factor", efficiency.savings_note))
    if c := result.compute:
        rate = c.train_images_per_sec
        rows.append(("compute", f"inference {c.inference_ms_per_image:.3g} ms/"
                                f"{unit(result.backbone)} (batch {c.batch_size}, {c.device})"
                                + (f"; training {rate:,.0f} {unit(result.backbone, True)}/s"
                                   if rate else "")))
    if result.precision:
        rows.append(("precision", result.precision))
    if result.eval_seconds is not None:
        rows.append(("evaluation time", f"{result.eval_seconds} s"))
    return rows


def text_table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    """Rows as aligned plain text (first column left, the others right); None prints blank."""
    table = [list(header)] if header else []
    table += [["" if c is None else (f"{c:+.3f}" if isinstance(c, float) else str(c))
               for c in row] for row in rows]
    widths = [max(len(r[i]) for r in table if i < len(r)) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in table)


# --- one short summary per verb, for the command line ----------------------------------------

@singledispatch
def summary_lines(result: Record) -> list[str]:
    raise TypeError(f"no summary for {type(result).__name__}")


@summary_lines.register
def _(result: EvalResult) -> list[str]:
    lines = [text_table(headline_rows(result, result.label_efficiency),
                        ("", "this backbone", "raw pixels", "gain"))]
    if result.raw_euclidean_1nn is not None:  # signals: raw-series baselines, not pixels
        lines.append(f"raw-signal 1-NN: Euclidean {result.raw_euclidean_1nn:.3f}, DTW "
                     f"{number(result.raw_dtw_1nn)} (embedding 1-NN: "
                     f"{number(result.knn.get(1))}; {result.raw_baseline})")
    lines += [f"not run: {name} ({why})" for name, why in (result.skipped_sections or {}).items()]
    if study := result.label_efficiency:
        header, *rows = efficiency_rows(study)
        lines.append(text_table(rows, header))
        lines += [f"{name}: {text}" for name, text in chosen_steps(study.budgets)]
        factor = study.savings_factor
        bound = "<=" if study.savings_upper_bound else ""
        lines.append(f"label savings factor: {DASH if factor is None else f'{bound}{factor:.1f}x'}"
                     f" ({study.savings_note})")
    return lines


@summary_lines.register
def _(result: ExploreResult) -> list[str]:
    scores = {int(k): v for k, v in (result.silhouette or {}).items()}
    chosen = (f"silhouette {scores[result.n_clusters]:.3f}, the highest of k = "
              f"{min(scores)}..{max(scores)}" if scores else "as given")
    if scores and result.n_clusters == max(scores):
        chosen += "; the largest k tried: a larger --max-clusters may fit better"
    lines = [f"{result.images:,} images in {result.n_clusters} clusters ({chosen}); sizes: "
             + ", ".join(f"{c.size:,}" for c in result.clusters or []),
             f"near-duplicate pairs: {(result.near_duplicates or {}).get('pairs', 0):,}"
             + (f"; unreadable files skipped: {result.skipped_files}"
                if result.skipped_files else "")]
    if agreement := result.agreement_with_labels:
        lines.append(f"agreement with the source's {agreement['classes']} labels: NMI "
                     f"{agreement['nmi']:.3f}, ARI {agreement['ari']:.3f}")
    if picks := result.to_label:
        covered = (f", covering {picks['classes_covered']} of the source's classes"
                   if "classes_covered" in picks else "")
        lines.append(f"{picks['budget']} images to label first{covered}: {picks['file']}")
    return lines


@summary_lines.register
def _(result: DriftResult) -> list[str]:
    verdict = "drift" if result.p_value < 0.05 else "no significant drift"
    return [f"MMD^2 {result.mmd2:.5f} (95% of the no-drift null below "
            f"{result.null_mmd2_95:.5f}), p = {result.p_value:.4f}: {verdict}"]


@summary_lines.register
def _(result: FinetuneResult) -> list[str]:
    steps, per_class = result.steps or {}, result.per_class or {}
    how = "fixed"
    if "validation" in steps:
        how = (f"chosen on a hold-out of {steps['held_out']} labels" if steps["folds"] == 1 else
               f"chosen by {steps['folds']}-fold cross-validation on {steps['held_out']} labels")
        how += f"; validation accuracy by steps {steps['validation']}"
    inputs = unit(result.backbone, plural=True)
    views = f" on {result.views}" if result.views else ""
    return [f"{result.labelled_images} labelled {inputs}, {steps['steps']} steps{views} ({how})",
            f"test top-1 {result.test_top1:.4f} on {result.test_images} {inputs}; per class: "
            + ", ".join(f"{c} {a:.2f}" for c, a in zip(per_class.get("classes", []),
                                                        per_class.get("accuracy", [])))]


@summary_lines.register
def _(result: AnomalyScores) -> list[str]:
    if result.threshold is None:  # too few held-out normal images: ranked, none flagged
        return [f"{result.count} images scored and ranked, none flagged: "
                f"{result.threshold_rule}"]
    return [f"{result.flagged} of {result.count} images flagged anomalous "
            f"(threshold {result.threshold:.4f}: {result.threshold_rule})"]


@summary_lines.register
def _(result: SignalAnomalyScores) -> list[str]:
    scored = (f"{result.count} series, {result.steps} time steps scored (windows of "
              f"{result.window} steps, overlap {result.overlap:g})")
    if result.threshold is None:
        return [f"{scored}; ranked, none flagged: {result.threshold_rule}"]
    return [scored, f"{result.flagged} series and {result.flagged_steps} steps flagged anomalous "
                    f"(threshold {result.threshold:.4f}: {result.threshold_rule})"]


@summary_lines.register
def _(result: ExportResult) -> list[str]:
    parity = result.parity or {}
    lines = [f"parity: max |onnx - torch| = {parity['max']:.2e} (<= {parity['tolerance']:.0e}) "
             f"at batch sizes {', '.join(parity['max_abs_diff'])}"]
    latency, per = result.latency_ms_per_image or {}, unit(result.backbone)
    for b, ms in latency.get("onnxruntime", {}).items():
        lines.append(f"batch {b:>4}: onnxruntime {ms:.3f} ms/{per}, pytorch "
                     f"{latency['pytorch'][b]:.3f} ms/{per}")
    return [*lines, f"written: {result.model}"]


@summary_lines.register
def _(result: SegmentResult) -> list[str]:
    return [f"{len(result.results or [])} images, {result.instances} instances "
            f"({result.method}), {len(result.skipped or [])} unreadable skipped"]
