import os

import pytest


@pytest.fixture(autouse=True)
def _clean_stimmung_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith("STIMMUNG_") and name != "STIMMUNG_MODEL_CACHE":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def base_dir():
    from stimmung.models.e5_base import build_base_encoder

    return build_base_encoder()


@pytest.fixture(scope="session")
def annotator(base_dir):
    from stimmung.models.annotators import E5Annotator

    return E5Annotator(base_dir=base_dir)
