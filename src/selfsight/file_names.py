"""File names as selfsight writes them in its outputs (CSV, JSON, parquet, PNG names), so that
any name the file system allows, also one that is not valid UTF-8, round-trips exactly."""

from __future__ import annotations

import os
import re

_HEX_AFTER_BACKSLASH = re.compile(rb"\\(?=x[0-9a-fA-F]{2})")
# On Windows "\" separates folders, so no name holds one, and names are UTF-16: the only
# escapes written there are the three bytes of a lone surrogate (U+D800..U+DFFF).
_WINDOWS = os.sep == "\\"
_BYTE_ESCAPE = re.compile(r"((?:\\x[eE][dD]\\x[a-bA-B][0-9a-fA-F]\\x[89a-bA-B][0-9a-fA-F])+)"
                          if _WINDOWS else r"((?:\\x[0-9a-fA-F]{2})+)")


def portable_name(name: str | os.PathLike[str]) -> str:
    """``name`` as selfsight writes it in every output (CSV, JSON, parquet, PNG file names).

    The convention: a name that is valid Unicode is written unchanged; each byte of the name
    that is not valid UTF-8 (which Python's os functions hand over as a lone surrogate,
    ``os.fsdecode(b"caf\\xe9.png") == "caf\\udce9.png"``) is written as the four characters
    ``\\xHH`` (Python's ``backslashreplace``), so ``caf\\xe9.png``. So that this stays
    reversible, a backslash that the name itself holds is written as ``\\x5c`` when it is
    followed by ``x`` and two hex digits (and only then; not on Windows, where a backslash
    separates folders). The result is always valid UTF-8 text, and :func:`native_name` turns
    it back into the exact name: ``os.fsencode(native_name(portable_name(n))) ==
    os.fsencode(n)`` for every name ``n``.
    """
    name = os.fspath(name)
    if _WINDOWS or "\\" not in name:
        try:
            name.encode("utf-8")
            return name  # the common case: nothing to escape
        except UnicodeEncodeError:
            pass
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # a lone surrogate that no file system byte maps to
        raw = name.encode("utf-8", "surrogatepass")
    if not _WINDOWS:
        raw = _HEX_AFTER_BACKSLASH.sub(rb"\\x5c", raw)
    return raw.decode("utf-8", "backslashreplace")


def native_name(portable: str) -> str:
    """The file name that :func:`portable_name` wrote as ``portable`` (each ``\\xHH`` back to
    the byte HH, then decoded as the os functions decode names)."""
    if "\\x" not in portable:
        return portable
    parts = _BYTE_ESCAPE.split(portable)  # text, escapes, text, escapes, ..., text
    raw = b"".join(bytes.fromhex(part.replace("\\x", "")) if i % 2
                   else part.encode("utf-8", "surrogatepass") for i, part in enumerate(parts))
    return os.fsdecode(raw)


def display_name(name: str | os.PathLike[str]) -> str:
    """``name`` for a title drawn in a figure or a line printed: undecodable bytes as ``\\xHH``
    (as :func:`portable_name` writes them) and control characters (a newline, an escape code)
    as ``\\xHH`` too, so any name can be drawn. For reading only: not reversible; applying it
    twice changes nothing."""
    name = os.fspath(name)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = os.fsencode(name)
        except UnicodeEncodeError:
            raw = name.encode("utf-8", "surrogatepass")
        name = raw.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 0x100
                   else f"\\u{ord(c):04x}" for c in name)


# What Windows refuses in a file name: these characters, control characters, a trailing dot or
# space, and the device names (also before an extension: "CON.json").
_NOT_ON_WINDOWS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"{kind}{i}" for kind in ("COM", "LPT")
                                          for i in range(1, 10))}


def file_stem(name: str) -> str:
    """``name`` (a data source: a folder's name, ``uea:BasicMotions``) made into the start of a
    file name that Windows, macOS and Linux all allow: each character Windows refuses
    (``<>:"/\\|?*`` and control characters) becomes ``-`` (``uea-BasicMotions``), trailing dots
    and spaces go, and a device name (``CON``, ``COM1``, ...) gets a ``_`` in front. Names that
    are allowed already are unchanged; applying it twice changes nothing."""
    stem = _NOT_ON_WINDOWS.sub("-", name).rstrip(". ") or "data"
    return f"_{stem}" if stem.split(".", 1)[0].upper() in _DEVICES else stem
