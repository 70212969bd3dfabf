"""Typed config dataclasses built from plain key/value overrides (CLI ``--set``, YAML).

Unknown keys and wrong types fail with the list of valid keys; values are coerced to the type of
the field's default, so ``"0.1"`` from the command line becomes a float.
"""

from __future__ import annotations

import ast
from dataclasses import fields, replace
from typing import Any

from selfsight.errors import BadOptionValue, UserError

# Lightning's precision names; "auto" lets selfsight.device choose from the hardware.
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true")


def parse_value(text: str) -> Any:
    """'0.1' -> 0.1, '32,64' -> (32, 64), 'true' -> True, anything else stays a string."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def config_from_dict(cls: type, values: dict[str, Any], where: str, base: Any = None) -> Any:
    """Build a config dataclass from ``base`` (default: the class defaults) with ``values`` set,
    failing on unknown keys with the list of valid ones."""
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise UserError(f"{where}: unknown option(s) {unknown}; valid: {sorted(valid)}")
    defaults = cls() if base is None else base
    texts = {f.name for f in fields(cls) if "str" in str(f.type)}  # e.g. devices: int | str
    return replace(defaults, **{
        key: value if key in texts and isinstance(value, str) and not is_number(value)
        else _coerce(value, getattr(defaults, key), f"{where}.{key}")
        for key, value in values.items()})


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _coerce(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if not isinstance(value, bool):
            raise BadOptionValue(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(value, bool):
        try:
            return type(default)(value) if not isinstance(default, int) else int(value)
        except (TypeError, ValueError):
            raise BadOptionValue(f"{where}: expected a number, got {value!r}") from None
    if isinstance(default, tuple):
        items = value.split(",") if isinstance(value, str) else list(value)
        kind = type(default[0]) if default else float
        return tuple(kind(v) for v in items)
    return value
