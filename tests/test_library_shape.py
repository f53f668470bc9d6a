"""The shape of iemlib the redesign set (CONTRIBUTING.md): modules by concept, one definition per public
name, complete __all__, documented and short public functions."""

from __future__ import annotations

import ast
import collections
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "iemlib"
MODULES = sorted(p for p in ROOT.rglob("*.py") if "legacy" not in p.parts)
# Modules that were named after a chapter before the redesign; none may come back.
CHAPTER_NAMES = {"failure_modes", "open_directions", "taxonomy", "em_vs_sgd_archive", "label_noise", "conditions",
                 "identities", "mixture_sweep", "classification", "open_set", "em_vs_sgd"}


def _module_name(p: pathlib.Path) -> str:
    rel = p.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _tree(p: pathlib.Path) -> ast.Module:
    return ast.parse(p.read_text())


def _public_defs(tree: ast.Module) -> list[ast.FunctionDef | ast.ClassDef]:
    return [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")]


def test_no_module_is_named_after_a_chapter():
    """Concept modules only; a chapter's study lives in iemlib/experiments/, its exercises in iemlib/book/."""
    for p in MODULES:
        if "experiments" in p.parts or "exercises" in p.parts:
            continue
        assert p.stem not in CHAPTER_NAMES, f"{p.relative_to(ROOT)} is named after a chapter"
    assert not (ROOT / "legacy").exists(), "iemlib/legacy is the pre-redesign library; it must be gone"


def test_nothing_imports_the_legacy_library():
    for p in MODULES:
        assert "legacy" not in p.read_text().replace("legacy of", ""), f"{p.relative_to(ROOT)} mentions legacy"


def test_each_public_name_is_defined_once():
    """No name is defined in two modules (one API per concept; no name with two meanings). Exercise modules
    define per-chapter checkers and constants, and are left out."""
    where = collections.defaultdict(list)
    for p in MODULES:
        if "exercises" in p.parts and p.name != "__init__.py":
            continue
        for n in _public_defs(_tree(p)):
            where[n.name].append(str(p.relative_to(ROOT)))
    twice = {k: v for k, v in where.items() if len(v) > 1}
    assert not twice, twice


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_all_is_complete_and_every_public_definition_is_documented(path):
    if path.stem.startswith("_") and path.stem != "__init__":
        return  # a private module (its names are the package's business)
    mod = importlib.import_module(_module_name(path))
    tree = _tree(path)
    defs = _public_defs(tree)
    if not defs:
        return
    assert hasattr(mod, "__all__"), f"{mod.__name__} has public definitions but no __all__"
    missing = [n.name for n in defs if n.name not in mod.__all__]
    assert not missing, f"{mod.__name__}.__all__ lacks {missing}"
    assert all(hasattr(mod, n) for n in mod.__all__), f"{mod.__name__}.__all__ names something it does not define"
    undocumented = [n.name for n in defs if not ast.get_docstring(n)]
    assert not undocumented, f"{mod.__name__}: no docstring for {undocumented}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_public_functions_are_short_or_say_why(path):
    """At most 80 lines, or a docstring that says why it is longer ("Longer than 80 lines ...")."""
    for n in ast.walk(_tree(path)):
        if isinstance(n, ast.FunctionDef) and not n.name.startswith("_"):
            length = n.end_lineno - n.lineno + 1
            if length > 80:
                assert "Longer than 80 lines" in (ast.get_docstring(n) or ""), f"{n.name}: {length} lines"
