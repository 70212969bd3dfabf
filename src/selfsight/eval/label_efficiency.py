"""How many labels pretraining saves: an A/B comparison of fine-tuning the pretrained backbone
against training the same architecture from scratch, with the same recipe and budget, on
stratified label subsets; plus a linear probe on the same subsets (the transfer-efficiency
protocol of e.g. Hénaff et al., 2020, "Data-efficient image recognition with CPC").

Optionally both arms also use the unlabelled rest of the training split the SimCLRv2 way (Chen
et al., 2020): each fine-tuned arm becomes the teacher of a student that starts from the same
weights as that arm (the pretrained backbone, or the same random draw) and learns the labels
plus the teacher's soft predictions on every training image.

Each arm's fine-tuning budget is chosen on a validation hold-out of its own labelled subset
(``FinetuneRecipe.step_ladder``): a fixed step count under-trains a network from scratch (2
epochs of all labels left a ResNet near 0.82 on Fashion-MNIST, below raw-pixel kNN) while the
pretrained arm has long converged, and an A/B against a starved scratch arm overstates what
pretraining saves. Both arms go through the same selection, so "same recipe and budget" holds
for the procedure, which is the part a user can repeat."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from selfsight.backbones import Backbone
from selfsight.data import ImageSet
from selfsight.errors import UserError
from selfsight.eval.extract import extract_features
from selfsight.eval.finetune import Classifier, accuracy, finetune_views_note, train_classifier
from selfsight.eval.linear import linear_probe


@dataclass
class FinetuneRecipe:
    """One recipe for both arms. Base steps = max(min_steps, epochs * labelled images / batch):
    small subsets get more epochs. Each arm then trains for the multiple of the base in
    ``step_ladder`` that scores best on a stratified ``validation_fraction`` of its labelled
    subset (:func:`choose_steps`), or, with ``validation_folds`` > 1, pooled over stratified
    folds so that every labelled image is validated once (sturdier on small subsets: 120
    held-out images at 1% of Fashion-MNIST make one image 0.8 points); ``step_ladder=(1,)`` is
    the fixed budget."""

    epochs: float = 2.0
    min_steps: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    step_ladder: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    validation_fraction: float = 0.2
    validation_folds: int = 1  # > 1: k-fold cross-validation instead of one hold-out
    distill_epochs: float = 0.0  # epochs over the unlabelled images; 0: no distillation arms
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not self.step_ladder or min(self.step_ladder) <= 0:
            raise UserError(f"step_ladder needs positive multiples, got {self.step_ladder}")
        if not 0 < self.validation_fraction < 1:
            raise UserError("validation_fraction must be in (0, 1), got "
                            f"{self.validation_fraction}")
        if not isinstance(self.validation_folds, int) or self.validation_folds < 1:
            raise UserError("validation_folds must be a whole number >= 1, got "
                            f"{self.validation_folds!r}")

    def settings(self) -> str:
        """The settings as ``name=value`` pairs, for the recipe line of a result."""
        def show(value: object) -> str:
            if isinstance(value, tuple):
                return "/".join(show(v) for v in value)
            return f"{value:g}" if isinstance(value, float) else str(value)
        return ", ".join(f"{k}={show(v)}" for k, v in asdict(self).items())

    def steps(self, images: int) -> int:
        return max(self.min_steps, math.ceil(self.epochs * images / min(self.batch_size, images)))

    def train(self, start: Backbone, images: np.ndarray, labels: np.ndarray, classes: int,
              steps: int, seed: int = 0, device: str | torch.device = "cpu",
              progress: bool = True, teacher: Classifier | None = None,
              unlabeled: np.ndarray | None = None) -> Classifier:
        """:func:`train_classifier` with this recipe's batch, learning rate, weight decay and
        distillation temperature."""
        return train_classifier(start, images, labels, classes, steps, self.batch_size, self.lr,
                                self.weight_decay, seed, device, progress, teacher, unlabeled,
                                self.temperature)

    def distill_steps(self, steps: int, unlabelled: int) -> int:
        """Enough steps for ``distill_epochs`` over the unlabelled images, and never fewer than
        the fine-tuning itself (``steps``)."""
        return max(steps, math.ceil(self.distill_epochs * unlabelled / self.batch_size))


def choose_steps(candidates: list[int], score: Callable[[int], float]) -> tuple[int, dict]:
    """The step count among ``candidates`` (ascending) with the best ``score`` (validation
    accuracy after training that long), climbing until a longer budget no longer improves on
    the best so far: a converged arm stops early, an unconverged one climbs. Returns the choice
    and every score measured."""
    scores: dict[int, float] = {}
    best = candidates[0]
    for steps in candidates:
        scores[steps] = score(steps)
        if scores[steps] > scores[best]:
            best = steps
        elif steps != best:
            break
    return best, scores


def validation_splits(labels: np.ndarray, recipe: FinetuneRecipe,
                      seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) index pairs into ``labels`` for choosing the steps: one stratified
    hold-out of ``recipe.validation_fraction``, or ``recipe.validation_folds`` stratified folds
    (scikit-learn's ``StratifiedKFold``) that hold out every index exactly once."""
    labels = np.asarray(labels)
    folds = recipe.validation_folds
    if folds == 1:
        held = stratified_subset(labels, recipe.validation_fraction, seed)
        return [(np.setdiff1d(np.arange(len(labels)), held), held)]
    smallest = int(np.bincount(labels)[np.unique(labels)].min())
    if smallest < folds:
        raise UserError(f"validation_folds={folds} needs at least {folds} labelled images of "
                        f"every class; the smallest class has {smallest}")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def validated_steps(start: Backbone, images: np.ndarray, labels: np.ndarray, classes: int,
                    recipe: FinetuneRecipe, seed: int = 0,
                    device: str | torch.device = "cpu", progress: bool = True) -> dict:
    """How long to fine-tune ``start`` on (``images``, ``labels``): the ladder's one rung, or,
    for each rung, training on every validation split's kept part and scoring on its held-out
    part (pooled over folds), climbing while it improves (:func:`choose_steps`). Returns
    ``steps`` and, when validated, the score of each rung tried."""
    base = recipe.steps(len(labels))
    candidates = sorted({max(1, round(m * base)) for m in recipe.step_ladder})
    if len(candidates) == 1:
        return {"steps": candidates[0]}
    if recipe.validation_folds == 1 and np.bincount(labels)[np.unique(labels)].min() < 2:
        # A hold-out would take a class's only image (at 10% of a 40-series set, all of them).
        return {"steps": candidates[0], "fixed": "a class has one labelled image, none to hold "
                                                  "out: the ladder's first rung"}
    splits = validation_splits(labels, recipe, seed)

    def score(steps: int) -> float:
        correct = 0.0
        for kept, held in splits:
            model = recipe.train(start, images[kept], labels[kept], classes, steps, seed, device,
                                 progress)
            correct += accuracy(model, images[held], labels[held], torch.device(device)) * len(held)
        return correct / sum(len(held) for _, held in splits)

    steps, scores = choose_steps(candidates, score)
    chosen = {"steps": steps, "validation": {str(n): round(a, 4) for n, a in scores.items()},
              "held_out": sum(len(held) for _, held in splits), "folds": len(splits)}
    if steps == candidates[-1]:
        chosen["note"] = "the top rung won: this arm may still gain from a longer ladder"
    return chosen


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of ``fraction`` of each class of ``labels`` (at least one per class),
    drawn with ``seed``. Not scikit-learn's ``train_test_split(stratify=)``: at 1% of a small
    labelled set it may give a rare class no image at all, and it refuses classes of one image;
    a few-label study needs every class present."""
    labels = np.asarray(labels)
    if not 0 < fraction <= 1:
        raise UserError(f"label fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        picks.append(rng.choice(members, max(1, round(fraction * len(members))), replace=False))
    return np.sort(np.concatenate(picks))


def savings_factor(fractions: list[float], pretrained: list[float],
                   target: float) -> tuple[float | None, str]:
    """How many times fewer labels the pretrained arm needs to reach ``target``, the scratch
    arm's accuracy at the largest fraction run (all labels in the full study): accuracy is
    interpolated linearly in log(fraction) between the measured fractions, and the factor is
    that largest fraction / the fraction where the pretrained arm crosses ``target``."""
    order = np.argsort(fractions)
    f, acc = np.asarray(fractions, float)[order], np.asarray(pretrained, float)[order]
    reference = f"scratch@{100 * f[-1]:g}% ({target:.4f})"
    if len(f) < 2:  # the reference is the only fraction: nothing to save
        return None, (f"one fraction run ({f[0]:g}): the factor needs scratch at a larger "
                      "fraction as its reference")
    if acc[0] >= target:
        return f[-1] / f[0], (f"pretrained already matches {reference} at the smallest "
                              f"fraction {f[0]:g}: the factor is a lower bound")
    for i in range(1, len(f)):
        if acc[i] >= target:
            t = (target - acc[i - 1]) / (acc[i] - acc[i - 1])
            crossing = math.exp(math.log(f[i - 1]) + t * (math.log(f[i]) - math.log(f[i - 1])))
            return f[-1] / crossing, (f"pretrained reaches {reference} at {crossing:.4f} of the "
                                      f"labels (linear in log fraction between {f[i - 1]:g} "
                                      f"and {f[i]:g})")
    return None, f"pretrained does not reach {reference} at any measured fraction"


def label_efficiency(
    backbone: Backbone,
    train: ImageSet,
    test: ImageSet,
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0),
    seeds: tuple[int, ...] = (0, 1, 2),
    recipe: FinetuneRecipe | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict:
    """Top-1 per arm (pretrained fine-tune, scratch, linear probe; with
    ``recipe.distill_epochs`` also pretrained_distilled and scratch_distilled below 100%),
    fraction and seed; mean, std and the label savings factor (from the fine-tuned arms). The
    seed picks the subset and initialises the scratch model. Each fine-tuned arm's steps are
    chosen once per fraction, on the first seed's subset (``budgets`` in the result)."""
    recipe = recipe or FinetuneRecipe()
    device = torch.device(device)
    train_f = extract_features(backbone, train.images, device=device, progress=progress)
    test_f = extract_features(backbone, test.images, device=device, progress=progress)
    arms: dict[str, dict[str, list[float]]] = {"pretrained": {}, "scratch": {}, "linear": {}}
    if recipe.distill_epochs > 0:
        arms |= {"pretrained_distilled": {}, "scratch_distilled": {}}
    classes = int(max(train.labels.max(), test.labels.max())) + 1

    def fit(start: Backbone, images: np.ndarray, labels: np.ndarray, seed: int, steps: int,
            teacher: Classifier | None = None) -> Classifier:
        return recipe.train(start, images, labels, classes, steps, seed, device, progress,
                            teacher, None if teacher is None else train.images)

    budgets: dict[str, dict[str, dict]] = {"pretrained": {}, "scratch": {}}
    for fraction in fractions:
        key = str(fraction)
        for seed in seeds:
            index = stratified_subset(train.labels, fraction, seed)
            images, labels = train.images[index], train.labels[index]
            torch.manual_seed(seed)
            scratch = Backbone(backbone.config)
            for arm, start in (("pretrained", backbone), ("scratch", scratch)):
                if key not in budgets[arm]:
                    budgets[arm][key] = validated_steps(start, images, labels, classes, recipe,
                                                        seed, device, progress)
                    if progress and "validation" in budgets[arm][key]:
                        b = budgets[arm][key]
                        tqdm.write(f"{fraction:g} of the labels, {arm}: validation accuracy by "
                                   f"steps {b['validation']}, {b['steps']} chosen "
                                   f"{b.get('note', '')}")
                steps = budgets[arm][key]["steps"]
                model = fit(start, images, labels, seed, steps)
                scored = [(arm, model)]
                if recipe.distill_epochs > 0 and fraction < 1:  # else nothing is unlabelled
                    steps = recipe.distill_steps(steps, len(train))
                    scored.append((f"{arm}_distilled",
                                   fit(start, images, labels, seed, steps, teacher=model)))
                for name, classifier in scored:
                    arms[name].setdefault(key, []).append(
                        round(accuracy(classifier, test.images, test.labels, device), 4))
            probe = linear_probe(train_f[index], torch.tensor(labels), test_f,
                                 torch.tensor(np.asarray(test.labels)))  # copies: read-only
            arms["linear"].setdefault(key, []).append(round(probe["linear_top1"], 4))
            if progress:  # a study runs for many minutes: show each result as it lands
                tqdm.write(f"{fraction:g} of the labels, seed {seed}: " + ", ".join(
                    f"{arm} {runs[key][-1]:.4f}" for arm, runs in arms.items() if key in runs))
    mean = {arm: {k: round(float(np.mean(v)), 4) for k, v in runs.items()}
            for arm, runs in arms.items()}
    std = {arm: {k: round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 4)
                 for k, v in runs.items()} for arm, runs in arms.items()}
    full = str(max(fractions))
    factor, note = savings_factor(list(fractions), [mean["pretrained"][str(f)] for f in fractions],
                                  mean["scratch"][full])
    upper_bound = factor is not None and "note" in budgets["scratch"][full]
    if upper_bound:
        note += (f"; an upper bound: scratch@{float(full):.0%} chose the ladder's top rung and "
                 "may still improve with longer training")
    return {"fractions": list(fractions), "seeds": list(seeds),
            "recipe": (f"fine-tune: {finetune_views_note(backbone.config)}, AdamW, warm-up + "
                       "cosine, label smoothing 0.1, "
                       f"bf16 autocast, {recipe.settings()}; steps = max(min_steps, epochs x "
                       "labelled images / batch), times the step_ladder rung that scores best on a"
                       " stratified validation_fraction hold-out of the first seed's subset (or "
                       "pooled over validation_folds stratified folds when > 1), per arm and "
                       "fraction (budgets); distilled arms (if distill_epochs > 0): a student from"
                       " the arm's starting weights learns the labels plus the fine-tuned arm's "
                       "soft predictions (temperature) on all training images, max(steps, "
                       "distill_epochs x training images / batch) steps; linear: standardised "
                       "frozen features, L-BFGS"),
            "train_images": len(train), "test_images": len(test),
            "arms": arms, "mean": mean, "std": std, "budgets": budgets,
            "savings_factor": None if factor is None else round(factor, 2),
            "savings_note": note, "savings_upper_bound": upper_bound}
