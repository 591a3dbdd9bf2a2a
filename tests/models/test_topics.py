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


def test_topics_on_clear_cases(annotator):
    cases = {
        "Mein Paket ist seit zwei Wochen nicht angekommen, die Sendungsverfolgung zeigt nichts.": "delivery",
        "I was charged twice this month, please refund me.": "pricing_billing",
        "Die App stürzt beim Login jedes Mal ab.": "app_website",
        "Noch so eine Abrechnung und ich bin weg, dann kündige ich alles bei euch.": "churn_threat",
    }
    rows = annotator.topics.labels_for(annotator.embed(list(cases)))
    for (text, expected), row in zip(cases.items(), rows):
        labels = [label for label, _ in row]
        assert expected in labels, (text, row)


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
