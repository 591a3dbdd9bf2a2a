import numpy as np
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
    assert set(annotator.versions) == {"sentiment", "topics", "heads"}


def test_trained_heads_fill_complaint_relevance_aspects_intents_and_brand_sentiment(annotator):
    texts = ["Seit drei Wochen warte ich auf mein Paket und niemand antwortet auf meine Mails. Unverschämt!",
             "@AcmeHelp my order arrived broken and support hung up on me twice. Ridiculous.",
             "Vielen Dank für die schnelle Hilfe, super Service!",
             "Does the family plan include roaming in Switzerland?",
             "Die App stürzt bei jeder Überweisung ab, seit dem Update geht gar nichts mehr."]
    out = [Annotations() for _ in texts]
    annotator.annotate([MentionText(t) for t in texts], out)
    assert [a.complaint.label for a in out] == ["complaint", "complaint", "no_complaint", "no_complaint", "complaint"]
    assert out[0].complaint.probability > 0.8 > 0.2 > out[2].complaint.probability
    assert all(0 <= a.relevance <= 1 for a in out)
    assert "praise" in {i.label for i in out[2].intents} and "question" in {i.label for i in out[3].intents}
    assert "app_website" in {x.label for x in out[4].aspects}
    # sentiment toward the brand: the complaints negative, the thanks positive, each a distribution
    assert [a.brand_sentiment.label for a in (out[0], out[1], out[2], out[4])] == ["negative", "negative", "positive", "negative"]
    assert all(abs(sum(a.brand_sentiment.probabilities.values()) - 1) < 1e-3 for a in out)
    for a in out:
        topics = {t.label for t in a.topics}
        # labels with a trained head are decided by it, in topics as well as in their own field
        assert ("complaint" in topics) == (a.complaint.label == "complaint")
        assert {x.label for x in a.aspects + a.intents} <= topics
        assert all(0 <= t.score <= 1 for t in a.topics + a.aspects + a.intents)


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


MIXED = ["Danke!", "Mein Paket ist seit zwei Wochen nicht angekommen und niemand antwortet auf meine Mails.",
         "Worst app ever", "Die Preise sind schon wieder gestiegen, das ist wirklich nicht mehr normal für so einen Tarif.",
         "ok", "Is the service down for everyone right now? Nothing loads here in Hamburg since this morning."]


def test_length_buckets_do_not_change_results(annotator):
    """Sorting by token count and padding small buckets separately is only a speed-up: the same
    texts give the same sentiment and topic embeddings whatever the bucket size."""
    size = annotator.batch_size
    try:
        annotator.batch_size = 1
        probs_1, embs_1 = annotator.encode(MIXED)
        annotator.batch_size = 64
        probs_64, embs_64 = annotator.encode(MIXED)
    finally:
        annotator.batch_size = size
    assert np.allclose(probs_1, probs_64, atol=1e-4)
    assert np.allclose(embs_1, embs_64, atol=1e-4)


def test_one_pass_serves_sentiment_and_topics(annotator):
    """The shipped sentiment file carries the topic projection, so the pipeline runs 12 layers, not
    16; the projected embeddings stay close to e5's own (what the prototypes were defined in)."""
    import torch

    from stimmung.models.encoder import tokenize

    encoder = annotator.encoder
    assert encoder.single_pass
    ids, mask = tokenize(annotator.tokenizer, MIXED)
    with torch.inference_mode():
        projected = encoder(ids, mask).embeddings
        trunk = encoder.run_trunk(ids, mask)
        original = encoder.run_original_top(trunk, mask)
    cosine = (projected * original).sum(1)
    assert float(cosine.min()) > 0.95, cosine
    # and it is the projection, not the original branch, that the annotator uses
    assert not torch.allclose(projected, original, atol=1e-3)


def test_int8_feed_forward_quantisation_keeps_clear_cases(base_dir):
    """The throughput option: int8 feed-forward blocks, attention and heads in fp32."""
    import torch

    from stimmung.models.annotators import E5Annotator

    quick = E5Annotator(base_dir=base_dir, quantization="ffn")
    assert isinstance(quick.encoder.trunk[0].intermediate.dense, torch.ao.nn.quantized.dynamic.Linear)
    assert isinstance(quick.encoder.trunk[0].attention.self.query, torch.nn.Linear)
    assert not isinstance(quick.encoder.topic_projection, torch.ao.nn.quantized.dynamic.Linear)
    items = [MentionText("Absolut enttäuschend, nie wieder bestelle ich hier. Frechheit!"),
             MentionText("Super Service, vielen herzlichen Dank, ich bin begeistert!")]
    out = [Annotations() for _ in items]
    quick.annotate(items, out)
    assert [a.sentiment.label for a in out] == ["negative", "positive"]
    with pytest.raises(ValueError, match="models.quantization"):
        E5Annotator(base_dir=base_dir, quantization="int4")
