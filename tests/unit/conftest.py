import os

import pytest


@pytest.fixture(autouse=True)
def _clean_stimmung_env(monkeypatch, tmp_path_factory):
    """Unit tests see only the defaults plus what they set themselves: no STIMMUNG_* variables
    and no default settings file (a developer's ~/.config/stimmung/config.yaml, e.g. the demo's)."""
    for name in list(os.environ):
        if name.startswith("STIMMUNG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("no-default-config")))
