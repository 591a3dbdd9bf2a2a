"""Calibrate per-label topic thresholds on the 'tune' part of GermEval 2017 dev.

    python -m stimmung.models.calibrate_topics --tsv ../shared/data/germeval2017/dev.tsv [--write]

For each taxonomy label that a GermEval aspect maps onto (see ``evaluate.GERMEVAL_TO_TOPIC``),
pick the cosine threshold that maximises F1 on the tune part; labels without GermEval data (or
with fewer than ``MIN_SUPPORT`` tune documents) get the median of those thresholds as the file's
default. The held-out part and our own labelled
set (models/eval/) are never used here. ``--write`` updates models/taxonomy.yaml in place.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics

import numpy as np

from stimmung.models.annotators import E5Annotator
from stimmung.models.datasets import read_germeval
from stimmung.models.evaluate import GERMEVAL_TO_TOPIC, germeval_part
from stimmung.models.topics import default_taxonomy_path

# A threshold that maximises F1 over fewer positives than this is noise (GermEval tune has 8
# app/website and 17 customer-service documents); such labels take the default.
MIN_SUPPORT = 20


def best_threshold(sims: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    best = (0.0, 0.2)
    for t in np.arange(-0.2, 0.8, 0.0025):  # centered cosines (see topics.py)
        pred = sims >= t
        tp = int((pred & gold).sum())
        fp = int((pred & ~gold).sum())
        fn = int((~pred & gold).sum())
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        if f1 > best[0]:
            best = (f1, round(float(t), 4))
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tsv", required=True)
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)
    docs = [d for d in read_germeval(args.tsv) if germeval_part(d) == "tune"]
    annotator = E5Annotator(topics=True)  # with the sentiment file: the same single pass as the pipeline
    if annotator.topics is None:
        raise RuntimeError("the topic classifier did not load")
    taxonomy = annotator.topics.taxonomy
    sims = annotator.topics.similarities(annotator.embed([d.text for d in docs]))
    thresholds: dict[str, float | None] = {}
    report: dict[str, dict[str, object]] = {}
    for label in sorted(set(GERMEVAL_TO_TOPIC.values())):
        column = taxonomy.names.index(label)
        gold = np.array([any(GERMEVAL_TO_TOPIC.get(c) == label for c in d.categories) for d in docs])
        f1, t = best_threshold(sims[:, column], gold)
        report[label] = {"support": int(gold.sum()), "tune_f1": round(100 * f1, 1), "threshold": t}
        if gold.sum() >= MIN_SUPPORT:
            thresholds[label] = t
        else:
            report[label]["threshold"] = "default (too few tune documents)"
    default = round(statistics.median(t for t in thresholds.values() if t is not None), 4)
    for label in set(report) - set(thresholds):
        thresholds[label] = None  # the file's default
    print(json.dumps({"tune_documents": len(docs), "labels": report, "default_threshold": default}, indent=2))
    if args.write:
        path = default_taxonomy_path()
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"(?m)^threshold: .*$", f"threshold: {default}", text)
        for label, threshold in thresholds.items():
            # insert, replace or (for the default) drop the label's own threshold line after its name
            pattern = re.compile(rf"(?m)^  {label}:\n(    threshold: .*\n)?")
            line = f"    threshold: {threshold}\n" if threshold is not None else ""
            text = pattern.sub(f"  {label}:\n{line}", text, count=1)
        path.write_text(text, encoding="utf-8")
        print(f"updated {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
