"""The pinned environment must install on any machine: index pins only, no local wheel paths."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(\[[A-Za-z0-9_,.-]+\])?==[A-Za-z0-9_.+!-]+$")


@pytest.mark.parametrize("name", ["requirements.lock", "requirements-nodeps.txt"])
def test_every_requirement_is_an_index_pin(name):
    lines = [line.strip() for line in (ROOT / name).read_text().splitlines()]
    pins = [line for line in lines if line and not line.startswith("#")]
    assert pins, f"{name} pins nothing"
    not_pins = [line for line in pins if not PIN.match(line)]
    # e.g. "zstandard @ file:///tmp/…whl": pip freeze writes that for a locally downloaded wheel
    assert not not_pins, f"{name}: not installable from the package index on another machine: {not_pins}"
