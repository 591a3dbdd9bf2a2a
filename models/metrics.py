"""Evaluation figures (scikit-learn's implementations, grouped the way the model card reports them)."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from sklearn.metrics import f1_score, recall_score


def macro_f1(gold: Sequence[int], pred: Sequence[int]) -> float:
    return round(100 * f1_score(gold, pred, average="macro", labels=[0, 1, 2], zero_division=0), 2)


def macro_recall(gold: Sequence[int], pred: Sequence[int]) -> float:
    return round(100 * recall_score(gold, pred, average="macro", labels=[0, 1, 2], zero_division=0), 2)


def per_language_f1(gold: Sequence[int], pred: Sequence[int], languages: Sequence[str]) -> dict[str, float]:
    """Macro-F1 (in %) per language and over all examples ('all')."""
    groups: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for g, p, lang in zip(gold, pred, languages, strict=True):
        groups[lang][0].append(g)
        groups[lang][1].append(p)
    out = {lang: macro_f1(g, p) for lang, (g, p) in sorted(groups.items())}
    out["all"] = macro_f1(gold, pred)
    return out
