"""The linter and the type checker on the whole tree (settings in pyproject.toml: [tool.ruff],
[tool.mypy]): a finding fails the test suite, so `./run tests` keeps the tree clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_ruff_finds_nothing():
    done = _run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing():
    # the files and settings are in pyproject.toml; the cache lives outside the tree
    done = _run(sys.executable, "-m", "mypy", "--cache-dir", "/tmp/stimmung-mypy-cache")
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr
