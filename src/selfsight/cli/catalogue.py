"""``selfsight list``: the methods, backbones and recipes there are, without importing torch."""

from __future__ import annotations

import argparse
import textwrap

from selfsight.cli.options import print_lines

CATALOGUES = ("methods", "backbones", "recipes")


def list_arguments(ls: argparse.ArgumentParser) -> None:
    ls.add_argument("what", choices=CATALOGUES)


def run_list(args: argparse.Namespace) -> int:
    if args.what == "recipes":
        print_lines(recipe_lines())
        return 0
    from selfsight.backbone_names import OPTIONS, list_backbones

    items = method_descriptions() if args.what == "methods" else list_backbones()
    width = max(map(len, items))
    for name, text in items.items():
        print(f"{name:<{width}}  {text}")
    if args.what == "backbones":
        print("(any other timm model name works too)\n\noptions (--backbone-set key=value; any "
              "other key goes to timm's create_model):")
        width = max(map(len, OPTIONS))
        for key, text in OPTIONS.items():
            print(f"  {key:<{width}}  {text}")
    return 0


def recipe_lines() -> list[str]:
    """Each size-class recipe: what it sets, and the measurement behind it."""
    from selfsight.recipes import SMALL_IMAGE, recipe_rows

    lines = [f"settings that differ for small images (<= {SMALL_IMAGE} px); larger images use "
             "each method's defaults (--set overrides either)"]
    for name, size, settings, why in recipe_rows():
        lines += ["", f"{name}  [{size}]  {settings}"]
        lines += textwrap.wrap(why, 96, initial_indent="    ", subsequent_indent="    ")
    return lines


def method_descriptions() -> dict[str, str]:
    """Name -> description of every method, read from the method files' class attributes
    without importing them (torch and Lightning take seconds to load); a test holds it equal
    to ``selfsight.list_methods()``."""
    import ast
    import importlib.util
    from pathlib import Path

    found = {}
    folder = Path(importlib.util.find_spec("selfsight.methods").origin).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            values = {t.id: stmt.value for stmt in node.body if isinstance(stmt, ast.Assign)
                      for t in stmt.targets if isinstance(t, ast.Name)}
            if "name" in values and "description" in values:
                name = ast.literal_eval(values["name"])
                if name:
                    found[name] = ast.literal_eval(values["description"])
    return dict(sorted(found.items()))
