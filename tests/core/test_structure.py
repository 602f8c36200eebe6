"""The shape of the code, checked: layers import downwards only, modules stay small, every public
name is documented, one builder makes method contexts, one module composes results paths, and
library code neither prints nor imports click."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"cptbench": ROOT / "cptbench", "cptbench_baselines": ROOT / "baselines"}

#: each layer and the layers it may import (its own always); read bottom to top
ALLOWED = {
    "core": set(),
    "tasks": {"core"},
    "data": {"core", "tasks", "top"},
    "models": {"core"},
    "methods": {"core", "tasks", "data", "models"},
    "cpt": {"core", "tasks", "data", "models", "methods"},
    "baselines": {"core", "tasks", "data", "models", "methods"},
    "results": {"core", "data"},
    "run": {"core", "tasks", "data", "models", "methods", "cpt", "results"},
    "report": {"core", "tasks", "data", "models", "methods", "cpt", "results", "run", "top"},
}
MAX_LINES = 400
#: single modules a layer may import although their layer is above it: (layer, module, why)
EXCEPTIONS = {
    # ReCLIP's CPT-adapted baseline (clip-cpt) shades with CPT's own blend; the painting module is a
    # leaf (it imports numpy and cptbench.data only), so baselines reuse it rather than copy it.
    ("baselines", "cptbench.cpt.painting"),
}


def modules():
    for pkg, folder in PACKAGES.items():
        for f in sorted(folder.rglob("*.py")):
            rel = f.relative_to(folder).with_suffix("")
            yield ".".join([pkg, *rel.parts]).removesuffix(".__init__"), f


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "cptbench_baselines":
        return "baselines"
    if parts[0] != "cptbench":
        return None
    return parts[1] if len(parts) > 1 else "top"


def imports(tree: ast.AST):
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            yield n.module, n.lineno
        elif isinstance(n, ast.Import):
            for a in n.names:
                yield a.name, n.lineno


def test_layers_import_downwards_only():
    wrong = []
    for src, target in EXCEPTIONS:  # an exception names a leaf: it imports no layer above its importer
        f = ROOT / (target.replace("cptbench.", "cptbench/", 1).replace(".", "/") + ".py")
        for sub, line in imports(ast.parse(f.read_text())):
            if layer(sub) not in (None, layer(target), *ALLOWED[src]):
                wrong.append(f"{f.relative_to(ROOT)}:{line}: {target}, imported by {src} as an exception, imports {sub}")
    for module, f in modules():
        src = layer(module)
        if src not in ALLOWED:
            continue  # the applications: cli, api, mini (they may import anything)
        for target, line in imports(ast.parse(f.read_text())):
            dst = layer(target)
            if dst and dst != src and dst not in ALLOWED[src] and (src, target) not in EXCEPTIONS:
                wrong.append(f"{f.relative_to(ROOT)}:{line} ({src}) imports {target} ({dst})")
    assert not wrong, "\n".join(wrong)


def test_no_module_over_the_size_limit():
    long = [f"{f.relative_to(ROOT)} ({n})" for _, f in modules() if (n := len(f.read_text().splitlines())) > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_public_name_has_a_docstring():
    missing = []

    def visit(nodes, f, prefix=""):
        for n in nodes:
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith("_"):
                if ast.get_docstring(n) is None:
                    missing.append(f"{f.relative_to(ROOT)}:{n.lineno} {prefix}{n.name}")
                if isinstance(n, ast.ClassDef):
                    visit(n.body, f, f"{prefix}{n.name}.")

    for _, f in modules():
        tree = ast.parse(f.read_text())
        if ast.get_docstring(tree) is None and f.stat().st_size > 200:
            missing.append(f"{f.relative_to(ROOT)} (module)")
        visit(tree.body, f)
    assert not missing, "\n".join(missing)


def _calls(tree: ast.AST, name: str, with_arguments: bool = False):
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            fn = n.func
            called = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
            if called == name and (not with_arguments or n.args or n.keywords):
                yield n.lineno


def test_one_builder_makes_method_contexts():
    # (an empty ``MethodContext()``, the default of a method made outside any task, fills nothing in)
    sites = {f"{f.relative_to(ROOT)}" for _, f in modules()
             for _ in _calls(ast.parse(f.read_text()), "MethodContext", with_arguments=True)}
    assert sites == {"cptbench/run/context.py"}, sites


@pytest.mark.parametrize("literal", ["runs.jsonl", "predictions", "splits", "locks", "artifacts", "leaderboard.csv",
                                     "leaderboard_wide.csv", "leaderboard.md", "runs.deleted.jsonl", "report.html"])
def test_results_paths_are_composed_by_the_layout_only(literal):
    found = []
    for _, f in modules():
        if f.name == "layout.py":
            continue
        for n in ast.walk(ast.parse(f.read_text())):  # ``x / "runs.jsonl"``: a path being composed
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
                if any(isinstance(side, ast.Constant) and side.value == literal for side in (n.left, n.right)):
                    found.append(f"{f.relative_to(ROOT)}:{n.lineno}")
    assert not found, f"{literal!r} composed outside cptbench/results/layout.py: {found}"


def test_library_code_neither_prints_nor_imports_click():
    wrong = []
    for module, f in modules():
        if layer(module) in ("cli", None) or module == "cptbench.__main__":
            continue
        tree = ast.parse(f.read_text())
        wrong += [f"{f.relative_to(ROOT)}:{line} print()" for line in _calls(tree, "print")]
        wrong += [f"{f.relative_to(ROOT)}:{line} imports click" for target, line in imports(tree)
                  if target.split(".")[0] == "click"]
    assert not wrong, "\n".join(wrong)
