"""Tools the deployment tests run: helm (built from the Go module proxy by ./run) and promtool
(Debian's prometheus package). Missing tools fail the tests with the fix, they never skip."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tool(name: str, env: str, hint: str) -> str:
    found = os.environ.get(env) or shutil.which(name)
    cached = Path(os.environ.get("STIMMUNG_CACHE_DIR", Path.home() / ".cache" / "stimmung")) / "tools" / name
    if not found and cached.exists():
        found = str(cached)
    if not found:
        pytest.fail(f"{name} not found ({hint}); `./run tests` installs it", pytrace=False)
    return found


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm", "STIMMUNG_HELM", "go install helm.sh/helm/v3/cmd/helm@v3.22.0")


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool", "STIMMUNG_PROMTOOL", "apt-get install prometheus")
