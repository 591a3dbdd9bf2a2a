"""Evaluation behind `stimmung models evaluate ...` (prints the model card's figures).

Works on any data in the same layouts (see ``datasets.py``), so others can run it on their own
splits.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from stimmung.models.datasets import LABELS, ComplaintRow, GermEvalDoc, Split
from stimmung.models.heads import binary_figures, expected_calibration_error, micro_f1
from stimmung.models.metrics import macro_recall, per_language_f1

# GermEval 2017 aspect categories (before '#') -> our taxonomy labels, where one fits.
GERMEVAL_TO_TOPIC = {
    "Zugfahrt": "delivery",  # punctuality of the ride: delays are the bulk of it
    "Service_und_Kundenbetreuung": "customer_service",
    "Ticketkauf": "pricing_billing",
    "Sonstige_Unregelmässigkeiten": "outage",
    "DB_App_und_Website": "app_website",
    "Sicherheit": "safety",
}

# The trained aspect head's mapping (train_heads.py): the six above, plus the passenger-information
# category onto customer service and the on-board product categories onto product quality.
# Unmapped (no taxonomy aspect fits): Allgemein, Atmosphäre, Image, Reisen_mit_Kindern, QR-Code.
GERMEVAL_TO_ASPECT = {
    **GERMEVAL_TO_TOPIC,
    "Informationen": "customer_service",
    "Komfort_und_Ausstattung": "product_quality",
    "Connectivity": "product_quality",
    "Auslastung_und_Platzangebot": "product_quality",
    "Toiletten": "product_quality",
    "Gastronomisches_Angebot": "product_quality",
    "Barrierefreiheit": "product_quality",
    "Design": "product_quality",
    "Gepäck": "product_quality",
}


def germeval_part(doc: GermEvalDoc) -> str:
    """Deterministic carve-out of GermEval dev: 'heldout' (~50%) for reporting, 'tune' for thresholds."""
    return "heldout" if _digest(doc)[0] % 2 == 0 else "tune"


def _digest(doc: GermEvalDoc) -> bytes:
    return hashlib.sha256(f"{doc.id}\x1f{doc.text}".encode()).digest()


# Sample splitting for multi-task training (issue #17): when GermEval tune trains the encoder's
# layers, the heads must be fitted on tune documents those layers did not see, or their
# out-of-fold thresholds come out overconfident. A second, independent hash byte halves tune.
TUNE_HALVES = ("layers", "heads")


def germeval_tune_half(doc: GermEvalDoc) -> str:
    """Which half of GermEval tune a document is in: 'layers' (may train the encoder) or 'heads'."""
    return TUNE_HALVES[_digest(doc)[1] % 2]


def evaluate_sentiment(split: Split, predict: Callable[[list[str]], np.ndarray]) -> dict:
    probs = predict(split.texts)
    pred = probs.argmax(1).tolist()
    return {
        "examples": len(split.texts),
        "macro_f1": per_language_f1(split.labels, pred, split.languages),
        "macro_recall": macro_recall(split.labels, pred),
        "ece": expected_calibration_error(probs, np.array(split.labels)),
        "predicted": dict(Counter(LABELS[p] for p in pred)),
    }


def per_label_pr(gold: Sequence[set[str]], pred: Sequence[set[str]], labels: Sequence[str]) -> dict[str, dict]:
    out = {}
    for label in labels:
        tp = sum(1 for g, p in zip(gold, pred) if label in g and label in p)
        fp = sum(1 for g, p in zip(gold, pred) if label not in g and label in p)
        fn = sum(1 for g, p in zip(gold, pred) if label in g and label not in p)
        out[label] = {
            "support": tp + fn,
            "precision": round(100 * tp / (tp + fp), 1) if tp + fp else None,
            "recall": round(100 * tp / (tp + fn), 1) if tp + fn else None,
        }
    return out


@dataclass
class Scored:
    """Everything the enricher derives from texts, from one pass (for evaluation)."""

    sentiment: np.ndarray  # [N, 3] calibrated probabilities
    prototype: dict[str, np.ndarray]  # taxonomy label -> [N] bool (prototype similarity)
    heads: dict[str, tuple[list[str], np.ndarray, np.ndarray]]  # head -> (labels, probs [N, L], decided [N, L])


def detected_languages(texts: Sequence[str]) -> list[str | None]:
    """Each text's language as the pipeline's language annotator decides it (None: undetermined)."""
    from stimmung.models.base import Annotations, MentionText
    from stimmung.models.language import LanguageAnnotator

    out = [Annotations() for _ in texts]
    LanguageAnnotator().annotate([MentionText(t) for t in texts], out)
    return [a.language if a.language != "und" else None for a in out]


def score_texts(annotator, texts: list[str], chunk: int = 256, progress=None) -> Scored:
    """Run the builtin annotator's shared pass once over ``texts`` (in chunks); heads decide with
    each text's language as the pipeline detects it (some heads have per-language thresholds)."""
    from stimmung.models.features import topic_embeddings
    from stimmung.models.lexical import hashed_counts

    sentiment: list[np.ndarray] = []
    proto: list[np.ndarray] = []
    per_head: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = (
        {h.name: ([], []) for h in annotator.heads.heads} if annotator.heads else {})
    for start in range(0, len(texts), chunk):
        pools = annotator.pools(texts[start:start + chunk])
        sentiment.append(annotator.sentiment_probs(pools))
        proto.append(annotator.topics.scores(topic_embeddings(annotator.encoder, pools)) >= 0.5)
        counts = hashed_counts(texts[start:start + chunk]) if (annotator.heads and annotator.heads.reads_text) else None
        for head in (annotator.heads.heads if annotator.heads else []):
            probs = head.probabilities(pools, counts)
            per_head[head.name][0].append(probs)
            per_head[head.name][1].append(head.decide(probs, detected_languages(texts[start:start + chunk])))
        if progress is not None:
            progress(min(chunk, len(texts) - start))
    names = annotator.topics.taxonomy.names
    proto_all = np.concatenate(proto)
    heads = {h.name: (h.labels, np.concatenate(per_head[h.name][0]), np.concatenate(per_head[h.name][1]))
             for h in (annotator.heads.heads if annotator.heads else [])}
    return Scored(np.concatenate(sentiment), {n: proto_all[:, i] for i, n in enumerate(names)}, heads)


def _binary_with_ece(gold, probs, decided) -> dict:
    return dict(binary_figures(gold, decided), ece=expected_calibration_error(probs, np.asarray(gold, int)))


def evaluate_complaints(rows: list[ComplaintRow], scored: Scored) -> dict:
    """Complaint-class precision/recall/F1, macro-F1 over both classes, calibration error; per
    domain; the prototype label 'complaint' as the baseline (same texts, same pass)."""
    if "complaint" not in scored.heads:
        raise ValueError("no complaint head is loaded (models.heads is off or the head file is missing)")
    gold = np.array([r.complaint for r in rows])
    _, probs, decided = scored.heads["complaint"]
    proto = scored.prototype["complaint"]
    out = {"examples": len(rows), **_binary_with_ece(gold, probs[:, 0], decided[:, 0]),
           "prototype": binary_figures(gold, proto)}
    domains = np.array([r.domain for r in rows])
    if any(domains):
        out["domains"] = {d: {**binary_figures(gold[domains == d], decided[domains == d, 0]),
                              "prototype": binary_figures(gold[domains == d], proto[domains == d])}
                          for d in sorted(set(domains))}
    return out


def evaluate_germeval(docs: list[GermEvalDoc], scored: Scored, part: str = "heldout") -> dict:
    """On the chosen part: sentiment and brand-sentiment micro-F1 (= accuracy: one label per
    document) with their calibration errors, beside the majority class; relevance, complaint
    (weak label: relevant + negative) and aspects from the trained heads, each with the prototype labels as baseline. ``scored`` covers ``docs[part]``."""
    chosen = germeval_select(docs, part)
    gold_sent = np.array([LABELS.index(d.sentiment) for d in chosen])
    relevant = np.array([d.relevant for d in chosen])
    complaint = np.array([d.relevant and d.sentiment == "negative" for d in chosen])
    mapped = sorted(set(GERMEVAL_TO_TOPIC.values()))
    proto_any_mapped = np.any([scored.prototype[label] for label in mapped], axis=0)
    out: dict[str, Any] = {
        "part": part, "documents": len(chosen),
        "sentiment_micro_f1": round(100 * float(np.mean(scored.sentiment.argmax(1) == gold_sent)), 2),
        "sentiment_ece": expected_calibration_error(scored.sentiment, gold_sent),
        "prototype": {"relevance": binary_figures(relevant, proto_any_mapped),
                      "complaint": binary_figures(complaint, scored.prototype["complaint"])},
        # the prototype topics on the six labels GermEval's categories map onto (the former figures)
        "topics": per_label_pr([{GERMEVAL_TO_TOPIC[c] for c in d.categories if c in GERMEVAL_TO_TOPIC} for d in chosen],
                               [{label for label in mapped if scored.prototype[label][i]} for i in range(len(chosen))], mapped),
    }
    if "relevance" in scored.heads:
        _, probs, decided = scored.heads["relevance"]
        out["relevance"] = _binary_with_ece(relevant, probs[:, 0], decided[:, 0])
        out["relevance_micro_f1"] = out["relevance"]["accuracy"]
    if "complaint" in scored.heads:
        _, probs, decided = scored.heads["complaint"]
        out["complaint"] = _binary_with_ece(complaint, probs[:, 0], decided[:, 0])
    if "brand_sentiment" in scored.heads:
        labels, probs, _ = scored.heads["brand_sentiment"]
        brand = probs[:, [labels.index(label) for label in LABELS]]
        out["brand_sentiment_micro_f1"] = round(100 * float(np.mean(brand.argmax(1) == gold_sent)), 2)
        out["brand_sentiment_ece"] = expected_calibration_error(brand, gold_sent)
        out["majority_class_micro_f1"] = round(100 * float(np.mean(gold_sent == np.bincount(gold_sent).argmax())), 2)
    if "aspects" in scored.heads:
        labels, probs, decided = scored.heads["aspects"]
        gold = np.array([[any(GERMEVAL_TO_ASPECT.get(c) == a for c in d.categories) for a in labels] for d in chosen])
        proto = np.stack([scored.prototype.get(a, np.zeros(len(chosen), bool)) for a in labels], axis=1)
        out["aspects"] = {"micro_f1": micro_f1(gold, decided), "prototype_micro_f1": micro_f1(gold, proto),
                          "labels": {a: {**_binary_with_ece(gold[:, j], probs[:, j], decided[:, j]),
                                         "prototype_f1": binary_figures(gold[:, j], proto[:, j])["f1"]}
                                     for j, a in enumerate(labels)}}
    return out


def germeval_select(docs: list[GermEvalDoc], part: str) -> list[GermEvalDoc]:
    return [d for d in docs if part == "all" or germeval_part(d) == part]


def evaluate_topics(examples, predict_topics, labels: Sequence[str]) -> dict:
    """Per-label precision/recall (and micro figures) on a labelled JSONL set."""
    pred = predict_topics([e.text for e in examples])
    gold = [e.topics for e in examples]
    tp = sum(len(g & p) for g, p in zip(gold, pred))
    fp = sum(len(p - g) for g, p in zip(gold, pred))
    fn = sum(len(g - p) for g, p in zip(gold, pred))
    return {
        "examples": len(examples),
        "micro_precision": round(100 * tp / (tp + fp), 1) if tp + fp else None,
        "micro_recall": round(100 * tp / (tp + fn), 1) if tp + fn else None,
        "labels": per_label_pr(gold, pred, labels),
    }
