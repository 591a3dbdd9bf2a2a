"""Evaluation behind `stimmung models evaluate ...` (prints the model card's figures).

Works on any data in the same layouts (see ``datasets.py``), so others can run it on their own
splits.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Callable, Sequence

import numpy as np

from stimmung.models.datasets import LABELS, GermEvalDoc, Split
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
    digest = hashlib.sha256(f"{doc.id}\x1f{doc.text}".encode()).digest()
    return "heldout" if digest[0] % 2 == 0 else "tune"


def evaluate_sentiment(split: Split, predict: Callable[[list[str]], np.ndarray]) -> dict:
    probs = predict(split.texts)
    pred = probs.argmax(1).tolist()
    return {
        "examples": len(split.texts),
        "macro_f1": per_language_f1(split.labels, pred, split.languages),
        "macro_recall": macro_recall(split.labels, pred),
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


def evaluate_germeval(docs: list[GermEvalDoc], predict_sentiment, predict_topics, part: str = "heldout") -> dict:
    """Relevance and sentiment micro-F1 (= accuracy: one label per document) and topic P/R."""
    chosen = [d for d in docs if part == "all" or germeval_part(d) == part]
    texts = [d.text for d in chosen]
    sentiment = predict_sentiment(texts).argmax(1)
    topics = predict_topics(texts)
    # Relevance: a post is "about the company's service" when any mapped topic label fires.
    mapped = set(GERMEVAL_TO_TOPIC.values())
    relevant_pred = [bool(t & mapped) for t in topics]
    relevance_acc = np.mean([p == d.relevant for p, d in zip(relevant_pred, chosen)])
    sentiment_acc = np.mean([LABELS[s] == d.sentiment for s, d in zip(sentiment, chosen)])
    gold_topics = [{GERMEVAL_TO_TOPIC[c] for c in d.categories if c in GERMEVAL_TO_TOPIC} for d in chosen]
    pred_topics = [t & mapped for t in topics]
    return {
        "part": part,
        "documents": len(chosen),
        "relevance_micro_f1": round(100 * float(relevance_acc), 2),
        "sentiment_micro_f1": round(100 * float(sentiment_acc), 2),
        "topics": per_label_pr(gold_topics, pred_topics, sorted(mapped)),
    }


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
