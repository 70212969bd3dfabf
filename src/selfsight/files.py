"""Writing and reading the small text files of a run: every write is atomic (a temporary file
beside the target, flushed, then renamed over it), so a kill or a full disk mid-write leaves
the previous file whole; every read of a file that may come from elsewhere fails with one line
that names it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from selfsight.errors import MissingInput, UserError


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync it, then rename it over
    ``path`` (the rename is atomic on one file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, value: Any) -> Path:
    return write_text(path, json.dumps(value, indent=2))


def read_json(path: str | Path, what: str = "a selfsight file") -> Any:
    """The parsed JSON of ``path``; a missing or malformed file is a one-line user error."""
    path = Path(path)
    if not path.is_file():
        raise MissingInput(f"{path} not found: is it {what}?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
