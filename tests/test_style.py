"""The suite's own habits, checked: each test says in one line what it checks, and the tests
reach the load-test harness only as a program (its seam), never by importing it."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = sorted(Path(__file__).parent.glob("test_*.py"))


def functions_in(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """The test functions of one file (module level and in classes)."""
    return [n for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test")]


def test_every_test_has_a_one_line_docstring() -> None:
    """Each test function's docstring is there and is one line (the style guide's rule)."""
    bad = [f"{p.name}::{n.name}" for p in TESTS for n in functions_in(p)
           if not (doc := ast.get_docstring(n)) or "\n" in doc.strip()]
    assert sum(len(functions_in(p)) for p in TESTS) > 400  # the glob found the suite
    assert bad == [], f"give these a one-line docstring: {bad}"


def test_no_test_imports_the_load_test_package() -> None:
    """No test module imports `loadtest`: the suite runs the harness as a program only."""
    bad = []
    for path in Path(__file__).parent.glob("*.py"):
        for n in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in n.names] if isinstance(n, ast.Import)
                     else [n.module or ""] if isinstance(n, ast.ImportFrom) else [])
            bad += [f"{path.name}: {m}" for m in names if m.split(".")[0] == "loadtest"]
    assert bad == []
