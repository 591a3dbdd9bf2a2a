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
