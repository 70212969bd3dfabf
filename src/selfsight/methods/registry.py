"""Method registry (timm-style): ``@register_method``, ``create_method``, ``list_methods``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from selfsight.errors import UserError

if TYPE_CHECKING:
    from selfsight.methods.base import Method

_METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    if not cls.name or cls.name in _METHODS:
        raise ValueError(f"method name '{cls.name}' is empty or already registered")
    _METHODS[cls.name] = cls
    return cls


def list_methods() -> dict[str, str]:
    """Name -> one-line description of every registered method."""
    return {name: cls.description for name, cls in sorted(_METHODS.items())}


def get_method(name: str) -> type[Method]:
    if name not in _METHODS:
        raise UserError(f"unknown method '{name}'; valid: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def create_method(name: str, **kwargs: Any) -> Method:
    return get_method(name)(**kwargs)
