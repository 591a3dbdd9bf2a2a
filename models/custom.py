"""Heads for the operator's own labels (`stimmung models train-labels FILE`).

The operator labels posts from their stream in the evaluation JSONL format (``text``, ``topics``);
every label with enough positive and negative examples gets a calibrated one-vs-rest logistic
regression on the shared pass (heads.py), chosen by stratified k-fold cross-validation on those
examples (C, class weights, and whether the post's character n-grams are read beside the pools;
the layers of the builtin heads). The figures returned are the
cross-validated ones, on the operator's own examples. Labels with too few examples are skipped and
keep the prototype method of the taxonomy. The head file goes to the custom heads directory,
where the enricher loads it at start-up (a custom label overrides a builtin one of the same name).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stimmung.models.heads import (
    Config,
    best_threshold,
    binary_figures,
    cross_validated_platt,
    expected_calibration_error,
    fit_head,
    out_of_fold_logits,
    stratified_folds,
)
from stimmung.models.lexical import LEXICAL_SCALE, hashed_counts

CUSTOM_LAYERS = (8, 12)


class TrainLabelsError(ValueError):
    pass


def trainable_labels(examples, min_examples: int = 8) -> list[str]:
    """The labels with at least ``min_examples`` positive and negative examples. Needs no model,
    so the command checks this before loading one."""
    labels_seen = sorted({label for e in examples for label in e.topics})
    counts = {label: sum(label in e.topics for e in examples) for label in labels_seen}
    labels = [label for label in labels_seen if min_examples <= counts[label] <= len(examples) - min_examples]
    if not labels:
        raise TrainLabelsError(f"no label has at least {min_examples} positive and {min_examples} negative examples "
                               f"(counts: {counts or 'no labels'})")
    return labels


def train_custom_head(annotator, examples, target: Path, min_examples: int = 8, seed: int = 17) -> dict:
    labels = trainable_labels(examples, min_examples)
    labels_seen = sorted({label for e in examples for label in e.topics})
    y = np.array([[label in e.topics for label in labels] for e in examples], dtype=int)
    pools = annotator.pools([e.text for e in examples])
    k = max(2, min(10, int(y.sum(0).min()), int((1 - y).sum(0).min())))
    folds = stratified_folds([min(e.topics & set(labels), default="") for e in examples], k, seed)
    best: tuple[float, Config, np.ndarray, np.ndarray] | None = None
    ngram_counts = hashed_counts([e.text for e in examples])
    # pools only, and pools with the posts' character n-grams (an operator's label is often a word)
    for config in (Config(CUSTOM_LAYERS, c, balanced, lexical) for lexical in (0.0, LEXICAL_SCALE)
                   for c in (0.25, 1.0, 4.0) for balanced in (False, True)):
        logits = out_of_fold_logits(pools, y, folds, config, counts=ngram_counts)
        probs = np.stack([cross_validated_platt(logits[:, j], y[:, j], folds) for j in range(len(labels))], axis=1)
        score = float(np.mean([binary_figures(y[:, j], probs[:, j] >= 0.5)["f1"] for j in range(len(labels))]))
        if best is None or score > best[0]:
            best = (score, config, logits, probs)
    if best is None:  # the grid above is never empty
        raise RuntimeError("no configuration was scored")
    _, config, logits, probs = best
    thresholds = [best_threshold(probs[:, j], y[:, j].astype(bool)) for j in range(len(labels))]
    cv = {}
    for j, label in enumerate(labels):
        # per fold, the threshold chosen on the other folds (no fold picks its own)
        decided = np.zeros(len(y), bool)
        for f in range(k):
            rest = folds != f
            decided[folds == f] = probs[folds == f, j] >= best_threshold(probs[rest, j], y[rest, j].astype(bool))
        cv[label] = dict(binary_figures(y[:, j], decided), ece=expected_calibration_error(probs[:, j], y[:, j]))
    name = Path(target).stem
    head = fit_head(name, labels, pools, y, config, logits, thresholds,
                    {"trained_on": f"{len(examples)} operator-labelled examples", "pass": annotator.model_tag,
                     "cv": cv}, counts=ngram_counts)
    head.save(target)
    return {"path": str(target), "examples": len(examples), "labels": labels, "config": config.describe(),
            "folds": k, "cv": cv, "thresholds": dict(zip(labels, thresholds)),
            "skipped": [label for label in labels_seen if label not in labels]}
