"""`ruff check` and `mypy --strict` are part of the test command, so `.ci/run` fails on them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)


def test_ruff_is_clean() -> None:
    """ruff (rules in pyproject.toml) finds nothing in the code or the tests."""
    out = run("ruff", "check", "server", "protocol", "loadtest", "tests")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_is_clean() -> None:
    """mypy --strict (configured in pyproject.toml) finds nothing in server, protocol, loadtest."""
    out = run("mypy")
    assert out.returncode == 0, out.stdout + out.stderr
