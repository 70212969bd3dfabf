"""Where and at what precision selfsight computes, decided from the hardware at run time.

bf16 autocast is fast only where the hardware runs bf16 natively: a CUDA GPU with bf16 (Ampere
and later), or a CPU with AVX-512 BF16 or AMX. Elsewhere PyTorch emulates it, and a CPU with only
AVX2 ran the demo's training step 6x slower under bf16 autocast than in fp32. So every verb that
trains or infers asks :func:`resolve_precision` (``--precision auto``, the default), and the
choice is printed once and written beside its results.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from selfsight.config import PRECISIONS
from selfsight.errors import UserError

# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still include native bf16 instructions.
_BF16_ISAS = ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
              "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or the GPU when there is one, else the CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def cpu_has_native_bf16() -> bool:
    """True where the CPU runs bf16 matrix products natively (AVX-512 BF16 or AMX on x86; the
    BF16 extension on Arm, as oneDNN reports it) and oneDNN is not capped below them."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if isa and isa.upper() not in _BF16_ISAS:
        return False
    cpu = getattr(torch, "cpu", None)
    if hasattr(cpu, "_is_avx512_bf16_supported"):
        if cpu._is_avx512_bf16_supported() or (
                hasattr(cpu, "_is_amx_tile_supported") and cpu._is_amx_tile_supported()):
            return True
        if _is_x86():
            return False  # AVX-512 without BF16 (or AVX2): emulated, slower than fp32
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def _is_x86() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def cuda_has_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass(frozen=True)
class Precision:
    """A resolved precision: Lightning's name for it, and why it was chosen."""

    name: str  # "32-true", "bf16-mixed", "16-mixed" or "bf16-true"
    reason: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(self.name)


def resolve_precision(
    requested: str = "auto",
    device: str | torch.device | None = None,
    *,
    cpu_bf16: Callable[[], bool] | None = None,
    gpu_bf16: Callable[[], bool] | None = None,
) -> Precision:
    """``requested``, or for ``auto``: bf16 where the device runs it natively, fp16 mixed on a
    CUDA GPU without bf16, fp32 otherwise. The capability checks can be injected (tests)."""
    cpu_bf16 = cpu_bf16 or cpu_has_native_bf16
    gpu_bf16 = gpu_bf16 or cuda_has_bf16
    if requested not in PRECISIONS:
        raise UserError(f"unknown precision '{requested}'; valid: {', '.join(PRECISIONS)}")
    if requested != "auto":
        return Precision(requested, "as requested")
    kind = default_device(device).type
    if kind == "cuda":
        if gpu_bf16():
            return Precision("bf16-mixed", "auto: the GPU runs bf16 natively")
        return Precision("16-mixed", "auto: the GPU has no bf16; fp16 mixed precision")
    if kind == "cpu" and cpu_bf16():
        return Precision("bf16-mixed", "auto: the CPU runs bf16 natively (AVX-512 BF16/AMX)")
    return Precision("32-true", f"auto: the {kind.upper()} has no native bf16 (bf16 autocast "
                                "would be emulated, several times slower than fp32)")


def device_for(accelerator: str) -> torch.device:
    """The device a Lightning ``accelerator`` value will train on (for the precision choice)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


# The precision the inference helpers (extract_features, fine-tuning, anomaly and patch
# features) run at; a verb sets it once with ``computing_at`` instead of threading it through
# every helper.
_current: contextvars.ContextVar[Precision | None] = contextvars.ContextVar("precision",
                                                                            default=None)
_announced: set[tuple[str, str]] = set()


@contextlib.contextmanager
def computing_at(requested: str = "auto", device: str | torch.device | None = None,
                 announce: bool = True) -> Iterator[Precision]:
    """Resolve ``requested`` for ``device``, print it once per process, and make it the
    precision of :func:`autocast` inside the block."""
    precision = resolve_precision(requested, device)
    if announce:
        announce_precision(precision, default_device(device))
    token = _current.set(precision)
    try:
        yield precision
    finally:
        _current.reset(token)


def announce_precision(precision: Precision, device: torch.device) -> None:
    key = (precision.name, device.type)
    if key not in _announced:
        _announced.add(key)
        print(f"precision: {precision.name} on {device.type} ({precision.reason})",
              file=sys.stderr)


def current_precision(device: str | torch.device | None = None) -> Precision:
    """The precision set by the enclosing :func:`computing_at`, else ``auto`` for ``device``."""
    return _current.get() or resolve_precision("auto", device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast at the current precision on ``device`` (a no-op in fp32)."""
    dtype = current_precision(device).autocast_dtype
    if dtype is None or (dtype == torch.float16 and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def runs_at_precision(verb: Callable) -> Callable:
    """Decorator for a verb that infers or trains outside Lightning: it takes
    ``precision="auto"`` (or any of :data:`PRECISIONS`) and runs inside :func:`computing_at` for
    its ``device`` argument; a verb writes ``current_precision().name`` beside its results."""
    import functools
    import inspect

    signature = inspect.signature(verb)

    @functools.wraps(verb)
    def wrapper(*args: object, precision: str = "auto", **kwargs: object) -> object:
        bound = signature.bind_partial(*args, **kwargs).arguments
        device = bound.get("device")
        with computing_at(precision, device if isinstance(device, (str, torch.device)) else None):
            return verb(*args, **kwargs)

    return wrapper


def cpu_facts() -> dict[str, object]:
    """What a speed figure was measured on: the CPU model, its SIMD flags that matter here,
    whether PyTorch reports native bf16, and the oneDNN / ATen ISA caps in force."""
    import platform

    flags: list[str] = []
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:  # not Linux: the model name from platform, no flags
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "fma")
    caps = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
                                       "MKL_ENABLE_INSTRUCTIONS") if k in os.environ}
    return {"model": model, "flags": [f for f in wanted if f in flags],
            "native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads(),
            "isa_caps": caps}
