"""Heads that read the post's character n-grams beside the pools (pure logic, no encoder)."""

from pathlib import Path

import numpy as np
import pytest

from stimmung.models.heads import Config, HeadSet, LinearHead, fit_head, out_of_fold_logits, stratified_folds
from stimmung.models.lexical import MAX_CHARS, LexicalFeatures, hashed_counts

FILLERS = ["Die Fahrt nach Köln war heute", "Mein Zug am Morgen war", "Gestern im ICE war es", "Der Regionalexpress war",
           "Auf der Strecke nach Berlin war es", "Im Großraumwagen war es heute", "Die Verbindung über Hannover war"]


def keyword_posts(n: int, seed: int):
    """Posts whose label is one word (Klimaanlage) and pools that are pure noise: only the text
    can tell the classes apart."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    texts = [f"{FILLERS[i % len(FILLERS)]} {'ohne Klimaanlage, viel zu heiß' if label else 'pünktlich und ruhig'} ({i})"
             for i, label in enumerate(y)]
    pools = rng.normal(size=(n, 13, 384)).astype(np.float32)
    return texts, pools, y.astype(int)


def test_a_head_that_reads_text_learns_what_the_pools_do_not_carry():
    texts, pools, y = keyword_posts(300, 0)
    folds = stratified_folds(y, 5, 17)
    counts = hashed_counts(texts)
    pools_only = out_of_fold_logits(pools, y, folds, Config((8, 12), 1.0, True))[:, 0]
    with_text = out_of_fold_logits(pools, y, folds, Config((8, 12), 1.0, True, 1.0), counts=counts)[:, 0]
    assert np.mean((pools_only > 0) == y) < 0.7
    assert np.mean((with_text > 0) == y) > 0.95
    with pytest.raises(ValueError, match="hashed counts"):
        out_of_fold_logits(pools, y, folds, Config((8, 12), 1.0, True, 1.0))


def test_n_gram_columns_come_only_from_the_training_rows():
    train = hashed_counts(["Klimaanlage kaputt", "Klimaanlage aus", "Zug pünktlich"])
    lexical = LexicalFeatures.fit(train, 1.0, min_df=2)
    unseen = lexical.transform(hashed_counts(["Xylophon Quartett"]))
    assert unseen.nnz == 0  # n-grams no training row had twice carry no weight
    seen = lexical.transform(hashed_counts(["Klimaanlage"]))
    assert seen.nnz > 0 and np.linalg.norm(seen.toarray()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no character n-gram"):
        LexicalFeatures.fit(hashed_counts(["a b", "c d"]), 1.0, min_df=3)


def test_a_lexical_head_file_round_trips_and_refuses_to_run_without_the_text(tmp_path):
    texts, pools, y = keyword_posts(200, 1)
    counts = hashed_counts(texts)
    config = Config((8, 12), 1.0, True, 1.0)
    folds = stratified_folds(y, 5, 17)
    logits = out_of_fold_logits(pools, y, folds, config, counts=counts)
    head = fit_head("heat", ["heat"], pools, y, config, logits, [0.5], {"pass": "p"}, counts=counts)
    assert head.lexical is not None and head.lexical_weight is not None and head.weight.shape == (1, 768)
    head.save(tmp_path / "heat.safetensors")
    loaded = LinearHead.load(tmp_path / "heat.safetensors")
    assert Config.parse(loaded.meta["config"]) == config
    new_texts, new_pools, new_y = keyword_posts(50, 2)
    new_counts = hashed_counts(new_texts)
    assert np.allclose(loaded.probabilities(new_pools, new_counts), head.probabilities(new_pools, new_counts), atol=2e-2)
    assert np.mean(loaded.decide(loaded.probabilities(new_pools, new_counts))[:, 0] == new_y) > 0.95
    with pytest.raises(ValueError, match="reads the text"):
        loaded.probabilities(new_pools)
    heads = HeadSet([loaded], "v")
    assert heads.reads_text
    with pytest.raises(ValueError, match="pass texts"):
        heads.predict(new_pools)
    decided = [p.decided for p in heads.predict(new_pools, texts=new_texts)]
    assert [bool(d) for d in decided] == new_y.astype(bool).tolist()


def test_a_damaged_or_incomplete_head_file_is_refused_when_loaded(tmp_path):
    texts, pools, y = keyword_posts(100, 3)
    counts = hashed_counts(texts)
    config = Config((8, 12), 1.0, True, 1.0)

    def saved(name: str, change) -> Path:
        head = fit_head("heat", ["heat"], pools, y, config, np.zeros((100, 1)), [0.5], {}, counts=counts)
        change(head)
        head.save(tmp_path / name)
        return tmp_path / name

    def drop_ngrams(head):  # the configuration still says the head reads n-grams
        head.lexical, head.lexical_weight = None, None

    def short_idf(head):
        head.lexical.idf = head.lexical.idf[:-1]

    def column_out_of_range(head):
        head.lexical.columns = head.lexical.columns.copy()
        head.lexical.columns[-1] = 2**20

    def unsorted_columns(head):  # kept() finds columns by binary search
        head.lexical.columns = head.lexical.columns[::-1].copy()

    def fewer_weights(head):
        head.lexical_weight = np.zeros((1, len(head.lexical.columns) - 1))

    cases = {"stripped.safetensors": (drop_ngrams, "lacks lexical_columns"),
             "idf.safetensors": (short_idf, "idf"),
             "range.safetensors": (column_out_of_range, "hashed columns"),
             "unsorted.safetensors": (unsorted_columns, "ascending"),
             "weights.safetensors": (fewer_weights, "lexical weights do not match")}
    for name, (change, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            LinearHead.load(saved(name, change))
    good = saved("good.safetensors", lambda head: None)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable head file"):
        LinearHead.load(truncated)
    head = LinearHead.load(good)
    with pytest.raises(ValueError, match="1 texts for 100 pooled posts"):
        head.probabilities(pools, hashed_counts(texts[:1]))


def test_configurations_are_described_and_parsed_back():
    for config in (Config((8, 12), 4.0, True), Config((4, 8, 10, 12), 0.25, False, 1.0)):
        assert Config.parse(config.describe()) == config
    assert Config.parse("layers=[8, 12] C=4.0 class_weight=balanced") == Config((8, 12), 4.0, True)  # files before n-grams
    with pytest.raises(ValueError, match="not a head configuration"):
        Config.parse("C=4")


def test_only_a_posts_first_characters_are_hashed():
    start = "Die Klimaanlage im ICE nach Hamburg war wieder kaputt. " * 40
    long_post = start + "Xylophon " * 20_000  # a 200,000-character forum dump
    assert len(start) < MAX_CHARS < len(long_post)
    counts = hashed_counts([long_post, long_post[:MAX_CHARS]])
    assert (counts[0] != counts[1]).nnz == 0


def test_kept_columns_equal_scipys_column_selection():
    texts = ["Klimaanlage kaputt", "", "Zug pünktlich, danke", "Xylophon", "Klimaanlage aus, Zug spät"]
    train = hashed_counts(texts[:3] + texts[4:])
    lexical = LexicalFeatures.fit(train, 1.0, min_df=1)
    counts = hashed_counts(texts)  # with an empty post and one whose n-grams were never seen
    kept = lexical.kept(counts)
    assert kept.shape == (5, len(lexical.columns))
    assert (kept != counts[:, lexical.columns]).nnz == 0
    assert kept[1].nnz == 0 and kept[0].nnz > 0


def test_the_transform_is_scikit_learns_sublinear_tfidf():
    from sklearn.feature_extraction.text import TfidfTransformer

    texts = ["Klimaanlage kaputt kaputt kaputt", "Zug pünktlich, danke", "", "Klimaanlage aus, Zug spät"]
    counts = hashed_counts(texts)
    lexical = LexicalFeatures.fit(counts, 0.7, min_df=1)
    reference = TfidfTransformer(sublinear_tf=True).fit(counts[:, lexical.columns]).transform(counts[:, lexical.columns])
    assert np.allclose(lexical.transform(counts).toarray(), 0.7 * reference.toarray())
