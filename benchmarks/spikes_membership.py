"""What counting complaints instead of negativity changes (issue #18 item 5), on real labelled posts.

    python benchmarks/spikes_membership.py [--data ../shared/data] [--cache /tmp/stimmung-models-cache]

A spike series is only as good as what it counts. The default series per brand counts mentions the
complaint head marks as complaints; before issue #18 it counted negative sentiment. This script
measures, on real posts with gold labels, how each rule's membership matches the real complaints:
of the real complaints, how many each rule counts (recall), and of what it counts, how much is a
real complaint (precision), plus the non-complaints it counts per 100 posts (the noise a spike
detector sees).

* ``complaints/train.csv`` (1,736 English customer tweets, gold complaint labels): the complaint
  head was trained on this file, so it is scored out of fold: 10-fold CV with the shipped head's
  configuration (layers, C, class weights, n-grams, from ``models/heads/train-report.json``), each fold's
  logits from a model fitted on the other nine folds (GermEval's German rows left out), Platt maps
  and the threshold from the other folds too. The sentiment layers never saw this file.
* GermEval 2017 held-out part (1,202 German posts, never used for training or selection; weak
  complaint label: relevant and negative toward the company): the shipped heads as they are.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from stimmung.models.annotators import E5Annotator
from stimmung.models.datasets import read_complaints, read_germeval
from stimmung.models.evaluate import detected_languages, germeval_part
from stimmung.models.feature_cache import DEFAULT_CACHE, PoolCache
from stimmung.models.heads import (
    Config,
    best_threshold,
    cross_validated_platt,
    out_of_fold_logits,
    stratified_folds,
)
from stimmung.models.lexical import hashed_counts

HERE = Path(__file__).resolve().parent


def membership(gold: np.ndarray, counted: np.ndarray) -> dict:
    tp = int((gold & counted).sum())
    return {"counted": int(counted.sum()), "real_complaints": int(gold.sum()),
            "recall": round(100 * tp / max(1, int(gold.sum())), 1),
            "precision": round(100 * tp / max(1, int(counted.sum())), 1),
            "non_complaints_per_100_posts": round(100 * int((~gold & counted).sum()) / len(gold), 1)}


def shipped_config(report_path: Path) -> Config:
    return Config.parse(json.loads(report_path.read_text())["complaint"]["config"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parent / ".." / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--folds", type=int, default=10)
    args = ap.parse_args()
    started = time.monotonic()
    annotator = E5Annotator(topics=False, heads=True)
    cache = PoolCache(annotator, args.cache)
    out: dict = {"machine": f"{platform.machine()}, Python {platform.python_version()}", "results": {}}

    rows = read_complaints(args.data / "complaints" / "train.csv")
    pools = cache.pools("complaints-train", [r.text for r in rows]).astype(np.float32)
    gold = np.array([r.complaint for r in rows], dtype=bool)
    config = shipped_config(HERE.parent / "models" / "heads" / "train-report.json")
    folds = stratified_folds(gold.astype(int), args.folds, 17)
    counts = hashed_counts([r.text for r in rows])
    logits = out_of_fold_logits(pools, gold.astype(int).reshape(-1, 1), folds, config, counts=counts)[:, 0]
    probs = cross_validated_platt(logits, gold.astype(int), folds)
    head_says = np.zeros(len(rows), dtype=bool)
    for f in np.unique(folds):  # each fold's threshold from the other folds' out-of-fold probabilities
        head_says[folds == f] = probs[folds == f] >= best_threshold(probs[folds != f], gold[folds != f], macro=True)
    negative = annotator.sentiment_probs(pools).argmax(1) == 0
    out["results"]["complaints/train.csv (en, gold; complaint head out of fold)"] = {
        "complaint (default)": membership(gold, head_says), "negative sentiment (before)": membership(gold, negative),
        "complaint or negative": membership(gold, head_says | negative), "posts": len(rows),
        "head": f"{config.describe()}, {args.folds}-fold"}

    docs = [d for d in read_germeval(args.data / "germeval2017" / "dev.tsv") if germeval_part(d) == "heldout"]
    g_pools = cache.pools("germeval-heldout", [d.text for d in docs]).astype(np.float32)
    g_gold = np.array([d.relevant and d.sentiment == "negative" for d in docs])
    heads = annotator.heads
    if heads is None:
        raise SystemExit("the trained heads did not load")
    complaint_head = next(h for h in heads.heads if h.name == "complaint")
    # as in the pipeline: each post's detected language picks the threshold (German has its own)
    g_head = complaint_head.decide(complaint_head.probabilities(g_pools, hashed_counts([d.text for d in docs])), detected_languages([d.text for d in docs]))[:, 0]
    g_negative = annotator.sentiment_probs(g_pools).argmax(1) == 0
    out["results"]["GermEval 2017 held-out (de, weak label: relevant and negative)"] = {
        "complaint (default)": membership(g_gold, g_head), "negative sentiment (before)": membership(g_gold, g_negative),
        "complaint or negative": membership(g_gold, g_head | g_negative), "posts": len(docs), "head": "shipped"}
    out["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(out, indent=1))
    for data, figures in out["results"].items():
        print(f"\n{data}: {figures['posts']} posts ({figures['head']})")
        print("| series counts | counted | recall of real complaints | precision | non-complaints per 100 posts |")
        print("| --- | --- | --- | --- | --- |")
        for rule in ("complaint (default)", "negative sentiment (before)", "complaint or negative"):
            m = figures[rule]
            print(f"| {rule} | {m['counted']} | {m['recall']} | {m['precision']} | {m['non_complaints_per_100_posts']} |")


if __name__ == "__main__":
    main()
