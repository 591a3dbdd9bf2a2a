"""Calibration math, head files and the shared pass's windows (pure logic and the real encoder)."""

import numpy as np
import pytest

from stimmung.models.heads import (
    HeadSet,
    LinearHead,
    binary_figures,
    expected_calibration_error,
    fit_platt,
    fit_temperature,
    micro_f1,
    sigmoid,
)


def test_platt_scaling_recovers_the_map_that_generated_the_labels():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    y = rng.random(20000) < sigmoid(0.5 * z - 1.0)
    a, b = fit_platt(z, y)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.08)


def test_temperature_scaling_recovers_an_overconfident_models_temperature():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 1.5, (20000, 3))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    gold = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(true_logits * 2.0, gold) == pytest.approx(2.0, rel=0.08)


def test_expected_calibration_error_by_hand():
    # two bins: 0.9 confidence right 1 of 2 times (gap 0.4), 0.2 confidence, positive 0 of 2 (gap 0.2)
    assert expected_calibration_error(np.array([0.9, 0.9, 0.2, 0.2]), np.array([1, 0, 0, 0])) == pytest.approx(30.0)
    # multi-class: top-label confidence 0.6 and 0.8, both right -> gaps 0.4 and 0.2
    probs = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    assert expected_calibration_error(probs, np.array([0, 1])) == pytest.approx(30.0)
    rng = np.random.default_rng(2)
    p = rng.random(50000)
    assert expected_calibration_error(p, rng.random(50000) < p) < 1.0  # calibrated by construction


def test_binary_figures_by_hand():
    f = binary_figures([1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0, 0])
    assert (f["precision"], f["recall"], f["f1"]) == (pytest.approx(66.67), pytest.approx(66.67), pytest.approx(66.67))
    assert f["macro_f1"] == pytest.approx((66.667 + 80.0) / 2, abs=0.01)
    assert micro_f1(np.array([[1, 0], [1, 1]], bool), np.array([[1, 1], [0, 1]], bool)) == pytest.approx(66.67)


def _head(name="custom", labels=("a", "b"), tag="pass-x"):
    rng = np.random.default_rng(3)
    return LinearHead(name, list(labels), (8, 12), rng.normal(size=(len(labels), 768)).astype(np.float32),
                      np.array([0.1, -0.2][:len(labels)], np.float32), np.array([[1.5, 0.3], [0.8, -0.1]][:len(labels)]),
                      np.array([0.4, 0.6][:len(labels)]), {"pass": tag})


def test_head_file_round_trip_and_outputs(tmp_path):
    head = _head()
    head.save(tmp_path / "custom.safetensors")
    loaded = LinearHead.load(tmp_path / "custom.safetensors")
    assert loaded.labels == ["a", "b"] and loaded.layers == (8, 12) and loaded.meta["pass"] == "pass-x"
    pools = np.random.default_rng(4).normal(size=(5, 13, 384)).astype(np.float32)
    probs = loaded.probabilities(pools)
    assert probs.shape == (5, 2) and ((probs > 0) & (probs < 1)).all()
    assert np.allclose(probs, head.probabilities(pools), atol=2e-2)  # fp16 weights
    assert (loaded.decide(probs) == (probs >= [0.4, 0.6])).all()


def test_an_exclusive_head_sums_to_one_and_decides_exactly_one_label(tmp_path):
    rng = np.random.default_rng(6)
    head = LinearHead("brand_sentiment", ["negative", "neutral", "positive"], (8, 12),
                      rng.normal(size=(3, 768)).astype(np.float32), np.zeros(3, np.float32),
                      np.array([[1.2, 0.1], [0.9, -0.3], [1.0, 0.0]]), np.zeros(3), {"pass": "p", "decision": "argmax"})
    head.save(tmp_path / "brand_sentiment.safetensors")
    loaded = LinearHead.load(tmp_path / "brand_sentiment.safetensors")
    assert loaded.exclusive
    pools = rng.normal(size=(50, 13, 384)).astype(np.float32)
    probs = loaded.probabilities(pools)
    assert np.allclose(probs.sum(1), 1.0)
    decided = loaded.decide(probs)
    assert (decided.sum(1) == 1).all() and (decided.argmax(1) == probs.argmax(1)).all()
    assert len(set(probs.argmax(1))) > 1  # not one constant label
    heads = HeadSet([loaded], "v")
    assert heads.topic_labels == set() and heads.has("brand_sentiment")  # its labels are not topics


def test_a_language_threshold_decides_posts_in_that_language(tmp_path):
    head = _head("complaint", ("complaint",), "p")
    head.meta["language_thresholds"] = '{"de": [0.2]}'
    head.save(tmp_path / "complaint.safetensors")
    loaded = LinearHead.load(tmp_path / "complaint.safetensors")
    probs = np.array([[0.3], [0.3], [0.5]])
    assert loaded.decide(probs, ["de", "en", None]).tolist() == [[True], [False], [True]]  # global threshold 0.4
    assert loaded.decide(probs).tolist() == [[False], [False], [True]]  # no languages: the global threshold
    assert loaded.decide(np.zeros((0, 1)), []).shape == (0, 1)


def test_head_set_refuses_heads_from_another_pass(tmp_path):
    _head(tag="other-pass").save(tmp_path / "custom.safetensors")
    with pytest.raises(ValueError, match="another encoder pass"):
        HeadSet.load(tmp_path / "none", tmp_path, "this-pass")
    heads = HeadSet.load(tmp_path / "none", tmp_path, "other-pass")
    assert heads.topic_labels == {"a", "b"} and heads.version.startswith("custom-")


def test_a_custom_label_overrides_a_builtin_one(tmp_path):
    builtin = _head("aspects", ("delivery", "b"), "p")
    custom = _head("mine", ("delivery",), "p")
    custom.bias[:] = -50.0  # never fires
    heads = HeadSet([builtin, custom], "v")
    pools = np.random.default_rng(5).normal(size=(20, 13, 384)).astype(np.float32)
    for pred in heads.predict(pools):
        assert "delivery" not in pred.decided and pred.scores["delivery"] < 1e-6


def test_short_posts_keep_todays_tokens_and_long_posts_get_windows(annotator):
    from stimmung.models.encoder import PREFIX
    from stimmung.models.features import WINDOW, windows_for

    tok = annotator.tokenizer
    short = ["Danke!", "Mein Paket ist seit zwei Wochen nicht angekommen und niemand antwortet."]
    assert [w[0] for w in windows_for(tok, short)] == tok([PREFIX + t for t in short])["input_ids"]
    long_text = " ".join(f"Satz {i} über die Verspätung des Zuges nach Hamburg." for i in range(200))
    (head_tail,) = windows_for(tok, [long_text])
    assert len(head_tail) == 1 and len(head_tail[0]) == WINDOW
    (windows,) = windows_for(tok, [long_text], long_tokens=512)
    assert len(windows) > 1 and all(len(w) <= WINDOW for w in windows)
    assert sum(len(w) for w in windows) <= 512 + 6 * len(windows)
    assert all(w[0] == tok.cls_token_id and w[-1] == tok.sep_token_id for w in windows)


def test_window_pooling_is_the_token_weighted_mean(annotator):
    """A long post's pools are the token-weighted mean of its windows' pools (so logits pool too)."""
    from stimmung.models.features import encode_pools, windows_for

    assert len(windows_for(annotator.tokenizer, ["x " * 400], long_tokens=512)[0]) > 1
    text = " ".join(f"Punkt {i}: die App stürzt beim Bezahlen ab." for i in range(60))
    (windows,) = windows_for(annotator.tokenizer, [text], long_tokens=512)
    pooled = encode_pools(annotator.encoder, annotator.tokenizer, [text], long_tokens=512)[0]
    import torch

    from stimmung.models.features import layer_pools

    parts = []
    for w in windows:
        ids = torch.tensor([w])
        with torch.inference_mode():
            parts.append((len(w), layer_pools(annotator.encoder, ids, torch.ones_like(ids))[0].numpy()))
    expected = sum(n * p for n, p in parts) / sum(n for n, _ in parts)
    assert np.allclose(pooled, expected, atol=1e-4)
