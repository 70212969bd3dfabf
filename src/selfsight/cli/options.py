"""Flags that several verbs share, and the helpers that read them (no torch here)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from selfsight.config import PRECISIONS, parse_value
from selfsight.errors import UserError

if TYPE_CHECKING:  # the CLI imports torch-heavy modules only when a command runs
    from selfsight.eval.label_efficiency import FinetuneRecipe
    from selfsight.eval.suite import SectionSizes

PRECISION_HELP = ("auto (default): bf16 where the hardware runs it natively (a CUDA GPU with "
                  "bf16, a CPU with AVX-512 BF16 or AMX), fp16 mixed on other CUDA GPUs, "
                  "fp32 otherwise")
RUN_HELP = "run folder with backbone.safetensors"
LABELLED_HELP = "'fashion-mnist' or a labelled folder (class sub-folders, or --labels)"
# embed and predict read every image of a source (data.load_every_image)
EVERY_IMAGE_HELP = ("image folder (searched recursively) or 'fashion-mnist' (both splits, "
                    "training first)")


# --- argparse ``type=`` checks: a bad value is argparse's one-line usage error (exit 2) --------
def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not -float("inf") < value < float("inf"):  # nan, inf
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _checked(kind: type, ok: Any, what: str) -> Any:
    def parse(text: str) -> Any:
        value = _number(text, kind)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    parse.__name__ = what  # argparse names the type by it in some messages
    return parse


positive_int = _checked(int, lambda v: v >= 1, "a whole number >= 1")
non_negative_int = _checked(int, lambda v: v >= 0, "a whole number >= 0")
at_least_two = _checked(int, lambda v: v >= 2, "a whole number >= 2")
seed_value = _checked(int, lambda v: 0 <= v < 2**32, "a whole number in [0, 2**32)")
positive_float = _checked(float, lambda v: v > 0, "a finite number > 0")
non_negative_float = _checked(float, lambda v: v >= 0, "a finite number >= 0")
fraction = _checked(float, lambda v: 0 < v <= 1, "a fraction in (0, 1]")
open_fraction = _checked(float, lambda v: 0 < v < 1, "a fraction in (0, 1)")
below_one = _checked(float, lambda v: 0 <= v < 1, "in [0, 1)")


def devices_value(text: str) -> int | str:
    """``--devices``: 'auto' or a whole number >= 1."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 or 'auto', got {text!r}"
                                         ) from None


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def key_values(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    """``["lr=0.1", "scale=0.4,1"]`` -> ``{"lr": 0.1, "scale": (0.4, 1)}``."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} expects key=value, got '{pair}'")
        out[key.replace("-", "_")] = parse_value(value)
    return out


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """--device (default: the GPU when there is one), --precision and --no-progress."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: the "
                                                       "GPU when there is one)")
    add_precision(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or stage "
                                                                   "lines")


def add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)


def device_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """What add_device_options parsed, as the keyword arguments every verb takes."""
    return {"device": args.device, "progress": not args.no_progress,
            "precision": args.precision}


def add_finetune_recipe(parser: argparse.ArgumentParser) -> None:
    """Fine-tuning flags shared by ``evaluate`` (both A/B arms), ``finetune`` and the benchmark
    script; :func:`finetune_recipe` turns them into the recipe."""
    parser.add_argument("--finetune-epochs", type=positive_float, default=2.0,
                        help="fine-tuning epochs; small labelled sets get --min-steps")
    parser.add_argument("--min-steps", type=non_negative_int, default=200,
                        help="fewest fine-tuning steps (0: no minimum)")
    parser.add_argument("--lr", type=positive_float, default=1e-3,
                        help="fine-tuning learning rate")
    parser.add_argument("--step-ladder", type=positive_float, nargs="+", default=[1, 2, 4, 8],
                        metavar="M", help="multiples of the base steps to choose from on a "
                                          "validation hold-out of the labels; 1 alone: fixed")
    parser.add_argument("--validation-fraction", type=open_fraction, default=0.2,
                        help="share of each labelled subset held out to choose the steps")
    parser.add_argument("--validation-folds", type=positive_int, default=1,
                        help="choose the steps by k-fold cross-validation instead (every "
                             "labelled image validated once; k times the cost of the ladder)")
    parser.add_argument("--distill-epochs", type=non_negative_float, default=0.0,
                        help="then distil each fine-tuned model into a student on unlabelled "
                             "training images for this many epochs (SimCLRv2's third step; "
                             "0, the default: off)")


def finetune_recipe(args: argparse.Namespace) -> FinetuneRecipe:
    from selfsight.eval.label_efficiency import FinetuneRecipe

    return FinetuneRecipe(epochs=args.finetune_epochs, min_steps=args.min_steps, lr=args.lr,
                          step_ladder=tuple(args.step_ladder),
                          validation_fraction=args.validation_fraction,
                          validation_folds=args.validation_folds,
                          distill_epochs=args.distill_epochs)


def section_sizes(all_images: bool) -> SectionSizes:
    from selfsight.eval.suite import SectionSizes

    return SectionSizes.everything() if all_images else SectionSizes()


def print_lines(lines: list[str]) -> None:
    for line in lines:
        print(line)
