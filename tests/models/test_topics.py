import pytest

from stimmung.models.topics import TaxonomyError, load_taxonomy


def test_default_taxonomy_has_the_social_crm_labels():
    names = set(load_taxonomy().names)
    assert names == {"complaint", "question", "praise", "suggestion", "purchase_intent", "churn_threat", "delivery",
                     "pricing_billing", "product_quality", "customer_service", "app_website", "outage", "safety", "spam"}


@pytest.mark.parametrize("text,message", [
    ("labels: {}\n", "expected a mapping"),
    ("labels:\n  a: {examples: [x]}\n", "needs a description"),
    ("labels:\n  a: {description: d, threshold: 2}\n", "threshold"),
    ("labels: [\n", "cannot read"),
])
def test_bad_taxonomies_are_refused_clearly(tmp_path, text, message):
    f = tmp_path / "t.yaml"
    f.write_text(text)
    with pytest.raises(TaxonomyError, match=message):
        load_taxonomy(f)


# Real posts, not written by us and not paraphrasing the taxonomy's examples: GermEval 2017 dev
# rows (../shared/data/germeval2017/dev.tsv, cited by the status id in their `id` URL) and
# complaint tweets (../shared/data/complaints/train.csv, cited by `id`). Each is a plain case
# of its label as a reader would judge it; the label is ours, chosen before running the model.
REAL_CASES = [
    ("germeval", "693913931446947840", "delivery"),  # "Natürlich wieder Verspätung."
    ("germeval", "704383712511856640", "delivery"),  # "Fünfte Zugfahrt heute, zum vierten Mal verspätet."
    ("complaints", "810870043810664449", "delivery"),  # "dispatched and delivered however have got nothing?"
    ("complaints", "847849693186936832", "delivery"),  # "tracking number still doesn't work"
    ("germeval", "718508965408202752", "pricing_billing"),  # "Musste 48€ blechen. Willkürlich"
    ("germeval", "660451743835267072", "pricing_billing"),  # "Das Geld, was der Automat geschluckt hat"
    ("complaints", "914907321146400770", "pricing_billing"),  # "You overcharged me $150"
    ("complaints", "932442570759733249", "pricing_billing"),  # "why am I being charged tax twice?"
    ("germeval", "702967201012322304", "app_website"),  # "über die App ein Ticket zu buchen, dabei ist sie abgestürzt"
    ("germeval", "601421604149731328", "app_website"),  # "db navigator app ... unbrauchbar."
    ("complaints", "782575281953443840", "app_website"),  # "your website doesn't load"
    ("complaints", "673716275865124864", "app_website"),  # "showtime app on Apple TV isn't working"
    ("complaints", "936814483447492608", "churn_threat"),  # "i'll cancel and buy from Amazon instead"
    ("complaints", "868486776096264193", "churn_threat"),  # "Ready to cancel my AOL account."
]


def real_text(corpus: str, row_id: str) -> str:
    import csv
    from pathlib import Path

    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if corpus == "germeval":
        rows = csv.DictReader(open(data / "germeval2017" / "dev.tsv", encoding="utf-8"), delimiter="\t")
        return next(r["text"] for r in rows if r["id"].rstrip("/").endswith(f"/statuses/{row_id}"))
    rows = csv.DictReader(open(data / "complaints" / "train.csv", encoding="utf-8"))
    return next(r["text"] for r in rows if r["id"] == row_id)


def test_topics_on_real_clear_cases(annotator):
    texts = [real_text(corpus, row_id) for corpus, row_id, _ in REAL_CASES]
    rows = annotator.topics.labels_for(annotator.embed(texts))
    hits = {(row_id, expected) for (_, row_id, expected), row in zip(REAL_CASES, rows) if expected in [l for l, _ in row]}
    misses = [(row_id, expected, row) for (_, row_id, expected), row in zip(REAL_CASES, rows) if (row_id, expected) not in hits]
    # Measured with the builtin model (fp32): 8 of 14. Missed: both churn threats (one read as a
    # question, one as a complaint only), the German app crash and the DB Navigator post, the
    # ticket machine that kept the money, and "wieder Verspätung" (no label at all). The
    # paraphrased cases this test had before all passed: they measured the taxonomy's own examples.
    assert len(hits) >= 8, misses
    # every topic but churn_threat finds at least one of its real posts
    assert {e for _, e in hits} >= {"delivery", "pricing_billing", "app_website"}, misses


def test_centering_spreads_crowded_similarities(tmp_path):
    """Embeddings that all share one dominant direction (as e5's do) have raw cosines near 1 for
    everything; after subtracting the taxonomy's mean the label directions separate."""
    import numpy as np

    from stimmung.models.topics import TopicClassifier

    f = tmp_path / "t.yaml"
    f.write_text("threshold: 0.5\nlabels:\n  a: {description: alpha, examples: [a1]}\n"
                 "  b: {description: beta, examples: [b1]}\n  c: {description: gamma, examples: [c1]}\n")
    common = np.array([10.0, 0, 0, 0])
    direction = {"a": np.array([0, 1.0, 0, 0]), "b": np.array([0, 0, 1.0, 0]), "c": np.array([0, 0, 0, 1.0])}
    first = {"alpha": "a", "a1": "a", "beta": "b", "b1": "b", "gamma": "c", "c1": "c"}

    def embed(texts):
        rows = [common + direction[first[t] if t in first else t] for t in texts]
        return np.stack([r / np.linalg.norm(r) for r in rows])

    clf = TopicClassifier.build(load_taxonomy(f), embed)
    post = embed(["b"])
    raw = post @ np.stack([embed(["a"])[0], embed(["b"])[0], embed(["c"])[0]]).T
    assert raw.min() > 0.98  # raw cosines cannot tell the labels apart
    assert clf.labels_for(post)[0][0][0] == "b"
    assert [label for label, _ in clf.labels_for(post)[0]] == ["b"]
    sims = clf.similarities(post)[0]
    assert sims[1] > 0.9 and sims[0] < 0 and sims[2] < 0
