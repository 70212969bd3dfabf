"""Imports go one way, down the layers of docs/ARCHITECTURE.md, and never in a circle; every
module is in the table, so a new one has to be placed."""

import ast
import subprocess
import sys
from pathlib import Path

import selfsight

SRC = Path(selfsight.__file__).parent
# Lowest first. A module may import its own layer and the ones above it in this list.
LAYERS = {
    "base": ("errors", "config", "files", "file_names", "run_folder", "backbone_names",
             "progress", "recipes", "results", "summaries", "signals/names"),
    "blocks": ("device", "nn", "losses", "views", "artifacts", "backbones", "data",
               "label_selection", "train/loop", "signals", "signals/readers", "signals/tables",
               "signals/folders", "signals/data",
               "signals/views", "signals/backbones"),
    "consumers": ("eval", "anomaly", "export", "segment", "classify", "reports",
                  "signals/embed", "signals/windows", "signals/anomaly", "signals/anomaly_api",
                  "signals/evaluate"),
    "training": ("methods", "train", "distill", "signals/train"),
    "verbs": ("api",),
    "interface": ("cli", "__init__"),
}
ORDER = list(LAYERS)


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str | None:
    """The layer of a selfsight module: its longest matching entry in LAYERS."""
    rel = module.split(".")[1:]
    if not rel:
        return "interface"
    found = [(len(entry.split("/")), name) for name, entries in LAYERS.items()
             for entry in entries if rel[:len(entry.split("/"))] == entry.split("/")]
    return max(found)[1] if found else None


def imports(path: Path, src: Path = SRC) -> set[str]:
    """Every module a file imports, at the top or inside a function, relative ones resolved."""
    here = module_name(path, src).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            names.add(base)
            # `from selfsight.x import y` may import the module selfsight.x.y
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def internal_imports() -> dict[str, set[str]]:
    """Module -> the selfsight modules it imports. The root package is left out: every import
    of a submodule passes through it, and it loads nothing until a verb is used (PEP 562)."""
    known = modules()
    return {m: {n for n in imports(p) if n in known and n not in (m, "selfsight")}
            for m, p in known.items()}


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if layer(m) is None]
    assert not unplaced, f"add these to LAYERS: {unplaced}"


def test_imports_go_down_the_layers():
    wrong = [f"{m} ({layer(m)}) imports {n} ({layer(n)})"
             for m, names in internal_imports().items() for n in names
             if ORDER.index(layer(n)) > ORDER.index(layer(m))]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = internal_imports()
    # A package's __init__ re-exporting its own modules is not a cycle through them.
    graph = {m: {n for n in names if not m.startswith(n + ".")} for m, names in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError(" -> ".join([*stack[stack.index(n):], n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_only_training_and_above_import_lightning():
    low = ORDER[:ORDER.index("training")]
    bad = [f"{m} imports {n}" for m, p in modules().items() if layer(m) in low
           for n in imports(p) if n.split(".")[0] == "lightning"]
    assert not bad, bad


def test_base_layer_and_the_parser_import_no_torch():
    base = [m for m in modules() if layer(m) == "base"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in base)
            + "import selfsight.cli\nselfsight.cli.build_parser()\n"
            "heavy = [m for m in ('torch', 'lightning', 'timm') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The checks above would pass on nothing: an upward import must be caught."""
    fake = tmp_path / "selfsight" / "nn" / "bad.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from selfsight.api import pretrain\n"
                    "from ..data import load_images\n")
    found = imports(fake, tmp_path / "selfsight")
    assert {"selfsight.api", "selfsight.data"} <= found
    assert layer("selfsight.nn.bad") == "blocks" and layer("selfsight.api") == "verbs"
    assert ORDER.index(layer("selfsight.api")) > ORDER.index(layer("selfsight.nn.bad"))
