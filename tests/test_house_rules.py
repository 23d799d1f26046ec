"""Issue 23: the house rules that keep the tree readable, checked so they stay kept."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE_DIRS = ("harness", "interventions", "tasks")
#: modules lm-eval loads by file path (`!function utils.x`): relative imports cannot work there
LOADED_BY_PATH = re.compile(r"^tasks/[^/]+/[^/]+\.py$")


def _modules() -> list[Path]:
    return sorted(p for d in PACKAGE_DIRS for p in (ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_small_modules_and_functions(path):
    src = path.read_text(encoding="utf-8")
    assert len(src.splitlines()) <= 400, f"{path.name}: over 400 lines"
    long = [(n.name, n.end_lineno - n.lineno + 1) for n in ast.walk(ast.parse(src))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert not long, f"{path.name}: functions over 60 lines: {long}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_tree(path):
    """Inside the package, imports are relative (a reader finds `from ..core.io import x` at harness/core/io.py)."""
    rel = str(path.relative_to(ROOT))
    if LOADED_BY_PATH.match(rel):
        return
    absolute = re.findall(r"^\s*(?:from|import) toxbench\b.*$", path.read_text(encoding="utf-8"), re.M)
    assert not absolute, f"{rel}: absolute imports {absolute}"


def test_no_run_state_in_the_environment_or_module_globals():
    """The data dir reaches tasks through their config; nothing writes it into the environment at run time."""
    for path in _modules():
        src = path.read_text(encoding="utf-8")
        assert not re.search(r"os\.environ\[[^]]*DATA[^]]*\]\s*=", src), path
        assert "global _current" not in src, path
