import pytest

from stimmung.models import Annotations, MentionText
from stimmung.models.annotators import HFSentimentAnnotator


@pytest.mark.parametrize("id2label,expected", [
    ({0: "negative", 1: "neutral", 2: "positive"}, [0, 1, 2]),
    ({0: "Positive", 1: "Negative", 2: "Neutral"}, [1, 2, 0]),
    ({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, [0, 1, 2]),
])
def test_hf_label_mapping(id2label, expected):
    assert HFSentimentAnnotator.label_index({k: v.lower() for k, v in id2label.items()}) == expected


def test_hf_label_mapping_refuses_what_it_cannot_map():
    with pytest.raises(ValueError, match="cannot map"):
        HFSentimentAnnotator.label_index({0: "joy", 1: "anger"})


def test_sentiment_on_clear_cases_and_duplicates_share_one_result(annotator):
    items = [MentionText("Absolut enttäuschend, nie wieder bestelle ich hier. Frechheit!"),
             MentionText("Super Service, vielen herzlichen Dank, ich bin begeistert!"),
             MentionText("Terrible service, I am never ordering again."),
             MentionText("Super Service, vielen herzlichen Dank, ich bin begeistert!")]
    out = [Annotations() for _ in items]
    annotator.annotate(items, out)
    assert [a.sentiment.label for a in out] == ["negative", "positive", "negative", "positive"]
    assert out[1].sentiment == out[3].sentiment
    for a in out:
        assert abs(sum(a.sentiment.probabilities.values()) - 1) < 1e-3
    assert set(annotator.versions) == {"sentiment", "topics"}
