"""Imports go one way, down (ARCHITECTURE.md): building blocks never import training code."""

import ast
from pathlib import Path

import selfsight

SRC = Path(selfsight.__file__).parent
BLOCKS = ("nn", "losses", "views", "backbones", "backbone_names", "data", "device", "progress",
          "errors", "config")
CONSUMERS = ("eval", "anomaly", "export", "reports", "segment")
ABOVE = ("selfsight.train", "selfsight.methods", "selfsight.api", "selfsight.cli")


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def files(part: str) -> list[Path]:
    p = SRC / part
    return sorted(p.rglob("*.py")) if p.is_dir() else [SRC / f"{part}.py"]


def test_blocks_import_no_lightning_and_nothing_above():
    for part in BLOCKS:
        for f in files(part):
            bad = {m for m in imports(f) if m.startswith(ABOVE) or m.startswith("lightning")}
            assert not bad, f"{f.relative_to(SRC)} imports {bad}"


def test_consumers_need_no_method_or_trainer():
    for part in CONSUMERS:
        for f in files(part):
            bad = {m for m in imports(f) if m.startswith(ABOVE)}
            assert not bad, f"{f.relative_to(SRC)} imports {bad}"
