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


def test_hf_sentiment_model_loads_by_path_and_annotates(tmp_path, base_dir):
    """The production path: any sequence-classification model directory (here a tiny one we save)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=3, id2label={0: "Positive", 1: "Negative", 2: "Neutral"},
                        label2id={"Positive": 0, "Negative": 1, "Neutral": 2})
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp_path)
    annotator = HFSentimentAnnotator(str(tmp_path), batch_size=2)
    assert annotator.index == [1, 2, 0] and annotator.version == f"hf:{tmp_path}"
    items = [MentionText("gut"), MentionText("schlecht"), MentionText("okay")]
    out = [Annotations() for _ in items]
    annotator.annotate(items, out)
    for a in out:
        assert a.sentiment.label in ("negative", "neutral", "positive")
        assert abs(sum(a.sentiment.probabilities.values()) - 1) < 1e-3
