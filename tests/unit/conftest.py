import os

import pytest


@pytest.fixture(autouse=True)
def _clean_stimmung_env(monkeypatch):
    """Unit tests see only the defaults plus what they set themselves."""
    for name in list(os.environ):
        if name.startswith("STIMMUNG_"):
            monkeypatch.delenv(name)
