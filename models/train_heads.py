"""Train the heads on the shared pass: complaint, relevance, aspects, intents (+ sentiment temperature).

    OMP_NUM_THREADS=1 python -m stimmung.models.train_heads --data ../shared/data --out models/heads

Data and selection (details and figures in models/README.md):

* complaint: complaints/train.csv (English, gold) + the *tune* part of GermEval 2017 dev (German,
  weak label: relevant and negative = complaint);
* relevance: GermEval tune (relevance column);
* aspects: GermEval tune, categories mapped by ``GERMEVAL_TO_ASPECT`` (evaluate.py), plus the
  taxonomy's examples of those labels as extra training rows (never evaluated on);
* intents: written examples (``models/train/intents_v1.jsonl``) + the taxonomy's examples; no
  quality figure is computed for them (no real labelled data exists);
* brand_sentiment: GermEval tune (document sentiment toward the company: negative, neutral,
  positive) plus UMSAB val tweets (all 8 languages, weight 0.3, never trained on by the sentiment
  layers) so that praise and complaints outside German railway feedback are still seen; an
  exclusive head, decided by the most probable label;
* sentiment: one temperature, fitted on UMSAB val (which the sentiment layers never trained on).

Each head's configuration (pooled layers, C, class weights, and whether it reads the post's
character n-grams beside the pools: lexical.py) is chosen by stratified k-fold
cross-validation on its training rows only; figures are the mean and sd over the folds, with the
prototype labels (taxonomy similarity) scored on the same folds as the baseline. Platt maps and
decision thresholds are fitted on out-of-fold predictions (for each reported fold: on the other
folds). GermEval's *held-out* part is scored once, at the end, by the chosen heads: never used
for selection. Runs on cached pools (feature_cache.py); never part of CI.

Sentiment layers trained on GermEval tune as well (train_sentiment --germeval) must not pool the
documents the heads are fitted on: with layers trained on one half, the heads get the other half;
with layers trained on all of tune, ``--cross-fit LAYERS_FILE HEADS_FILE`` pools each tune
document with a file of the same recipe trained on the other half (models/README.md, multi-task).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from stimmung.models.evaluate import TUNE_HALVES
from stimmung.models.heads import (
    Config,
    best_shared_threshold,
    best_threshold,
    binary_figures,
    cross_validated_platt,
    expected_calibration_error,
    fit_head,
    fit_temperature,
    mean_sd,
    micro_f1,
    normalized_rows,
    out_of_fold_logits,
    stratified_folds,
)
from stimmung.models.lexical import LEXICAL_SCALE
from stimmung.models.metrics import per_language_f1

log = logging.getLogger("train_heads")
HERE = Path(__file__).resolve().parent
ASPECTS = ["delivery", "pricing_billing", "product_quality", "customer_service", "app_website", "outage", "safety"]
INTENTS = ["question", "praise", "suggestion", "purchase_intent", "churn_threat", "spam"]
LAYER_CHOICES = [(8, 12), (6, 9, 12), (4, 8, 10, 12), (12,)]


SENTIMENTS = ("negative", "neutral", "positive")
# UMSAB tweets' weight beside GermEval in the brand-sentiment head: at 0 the head calls nearly every
# tweet neutral (UMSAB macro-F1 18), at 1 GermEval falls 4 points; 0.3 keeps GermEval within ~2
# points of its own head and tweets at ~60 (10-fold CV, recorded in models/README.md).
BRAND_SENTIMENT_TWEET_WEIGHT = 0.3


def grid(c_values=(0.25, 1.0, 4.0, 16.0), layers=LAYER_CHOICES, balanced=(False, True), lexical=(0.0,)) -> list[Config]:
    return [Config(l, c, b, x) for x, l, c, b in itertools.product(lexical, layers, c_values, balanced)]


def with_and_without_text(c_values, layers, balanced, lexical_c_values) -> list[Config]:
    """Pools-only configurations, and (a narrower C grid: each fit is slower) the same with the
    text's n-grams beside them; CV chooses among all of them."""
    return grid(c_values, layers, balanced) + grid(lexical_c_values, layers, balanced, (LEXICAL_SCALE,))


def train_exclusive_head(name, labels, pools, gold, folds, configs, meta, parts, sample_weight, counts):
    """A one-label-per-post head (e.g. negative/neutral/positive): one-vs-rest logits, Platt maps per
    label from out-of-fold logits, rows normalised, the most probable label decided. ``parts`` names
    each row's data set ("germeval" or a tweet language): selected by the mean of GermEval's CV
    micro-F1 (= accuracy) and the tweet languages' mean CV macro-F1; returns (head, report)."""
    from sklearn.metrics import f1_score

    y = np.eye(len(labels), dtype=int)[gold]

    def figure(pred, rows):
        if parts[rows][0] == "germeval":
            return 100 * float(np.mean(pred[rows] == gold[rows]))
        return 100 * float(f1_score(gold[rows], pred[rows], average="macro"))

    results = []
    for config in configs:
        logits = out_of_fold_logits(pools, y, folds, config, sample_weight=sample_weight, counts=counts)
        probs = np.zeros_like(logits)
        for j in range(len(labels)):
            probs[:, j] = cross_validated_platt(logits[:, j], y[:, j], folds)
        probs = normalized_rows(probs)
        pred = probs.argmax(1)
        per_part = {part: [figure(pred, (folds == f) & (parts == part)) for f in np.unique(folds)]
                    for part in dict.fromkeys(parts)}
        tweets = [np.mean(v) for part, v in per_part.items() if part != "germeval"]
        # GermEval and the tweets weigh equally, whatever the number of tweet languages
        score = float(np.mean([np.mean(per_part["germeval"])] + ([np.mean(tweets)] if tweets else [])))
        results.append((score, config, logits, probs, per_part))
        log.info("%s %s: CV %s", name, config.describe(), {k: round(float(np.mean(v)), 2) for k, v in per_part.items()})
    _, config, logits, probs, per_part = max(results, key=lambda r: r[0])
    head = fit_head(name, labels, pools, y, config, logits, [0.0] * len(labels), meta, sample_weight, counts)
    report = {"config": config.describe(), "selected_by": "CV: mean of GermEval micro-F1 and the tweet languages' mean macro-F1",
              "grid": {r[1].describe(): round(r[0], 2) for r in results},
              "cv": {part: {"micro_f1" if part == "germeval" else "macro_f1": mean_sd(v)} for part, v in per_part.items()},
              "cv_ece": {part: expected_calibration_error(probs[parts == part], gold[parts == part])
                         for part in dict.fromkeys(parts)}}
    g = parts == "germeval"
    report["cv"]["germeval"]["majority_class"] = mean_sd(
        [100 * float(np.mean(gold[g & (folds == f)] == 1)) for f in np.unique(folds)])
    return head, report


def fold_thresholds(probs: np.ndarray, y: np.ndarray, folds: np.ndarray, macro: bool) -> np.ndarray:
    """Per reported fold, per label: the best threshold on the *other* folds' out-of-fold probabilities."""
    out = np.zeros(probs.shape)
    for fold in np.unique(folds[folds >= 0]):
        rest = (folds != fold) & (folds >= 0)
        for j in range(probs.shape[1]):
            out[folds == fold, j] = best_threshold(probs[rest, j], y[rest, j].astype(bool), macro)
    return out


def cross_validate(pools, y, folds, configs, figure, criterion: str, macro_threshold: bool, eval_rows, counts):
    """Score every config by k-fold CV; return (best config, its out-of-fold logits, per-config scores)."""
    results = []
    for config in configs:
        started = time.monotonic()
        logits = out_of_fold_logits(pools, y, folds, config, counts=counts)
        _, pred = calibrated_predictions(logits, y, folds, macro_threshold)
        score = fold_figures(y, pred, folds, eval_rows, figure)[criterion]["mean"]
        results.append((score, config, logits))
        log.info("%s: CV %s %.2f (%.0fs)", config.describe(), criterion, score, time.monotonic() - started)
    best = max(results, key=lambda r: r[0])
    return best[1], best[2], {r[1].describe(): r[0] for r in results}


def calibrated_predictions(logits, y, folds, macro_threshold):
    probs = np.zeros_like(logits)
    rows = folds >= 0
    for j in range(y.shape[1]):
        probs[rows, j] = cross_validated_platt(logits[rows, j], y[rows, j], folds[rows])
    thresholds = np.full(probs.shape, 0.5)
    thresholds[rows] = fold_thresholds(probs[rows], y[rows], folds[rows], macro_threshold)
    return probs, probs >= thresholds


def prototype_scores(annotator, pools: np.ndarray, labels: list[str]) -> np.ndarray:
    from stimmung.models.features import topic_embeddings

    scores = annotator.topics.scores(topic_embeddings(annotator.encoder, pools))
    names = annotator.topics.taxonomy.names
    return np.stack([scores[:, names.index(label)] for label in labels], axis=1)


def fold_figures(y, pred, folds, rows, figure) -> dict:
    values = [figure(y[(folds == f) & rows], pred[(folds == f) & rows]) for f in np.unique(folds[folds >= 0])]
    return {k: mean_sd([v[k] for v in values]) for k in values[0]}


def binary_fig(y, pred):
    return binary_figures(y[:, 0].astype(bool), pred[:, 0])


def multilabel_fig(labels):
    def figure(y, pred):
        out = {"micro_f1": micro_f1(y.astype(bool), pred)}
        out.update({f"{label}_f1": binary_figures(y[:, j].astype(bool), pred[:, j])["f1"] for j, label in enumerate(labels)})
        return out
    return figure


def train_head(name, labels, pools, y, folds, configs, figure, criterion, macro, meta, baseline_pred, eval_rows, counts):
    """Select by CV, report CV figures (head and prototype baseline), fit the final head.
    ``counts``: the rows' hashed n-gram counts (lexical configurations read them).

    Returns (head, report, out-of-fold predictions and out-of-fold logits of the chosen config)."""
    y = y.reshape(len(y), -1).astype(int)
    config, logits, grid_scores = cross_validate(pools, y, folds, configs, figure, criterion, macro, eval_rows, counts)
    probs, pred = calibrated_predictions(logits, y, folds, macro)
    rows = eval_rows & (folds >= 0)
    report = {"config": config.describe(), "selected_by": f"CV mean {criterion}", "grid": grid_scores,
              "cv": {"head": fold_figures(y, pred, folds, rows, figure),
                     "prototype": fold_figures(y, baseline_pred.reshape(len(y), -1), folds, rows, figure)},
              "cv_ece": {label: expected_calibration_error(probs[rows, j], y[rows, j]) for j, label in enumerate(labels)}}
    thresholds = [best_threshold(probs[rows, j], y[rows, j].astype(bool), macro) for j in range(len(labels))]
    head = fit_head(name, labels, pools, y, config, logits, thresholds, meta, counts=counts)
    return head, report, pred, logits


def choose_aspect_thresholds(head, report, logits, y, folds) -> None:
    """Per-label thresholds (each label's best F1) or one shared threshold (the best micro-F1, the
    aspects' measure), whichever has the better CV micro-F1; each fold's thresholds are chosen on
    the other folds' out-of-fold probabilities. Rare labels' own thresholds are fitted on a few
    dozen positives; the shared one on all of them."""
    probs, per_label = calibrated_predictions(logits, y, folds, False)
    rows = folds >= 0
    shared = np.zeros_like(per_label)
    for fold in np.unique(folds[rows]):
        rest = rows & (folds != fold)
        shared[folds == fold] = probs[folds == fold] >= best_shared_threshold(probs[rest], y[rest])
    figure = multilabel_fig(head.labels)
    cv = {"per_label": fold_figures(y, per_label, folds, rows, figure), "shared": fold_figures(y, shared, folds, rows, figure)}
    chosen = max(cv, key=lambda k: cv[k]["micro_f1"]["mean"])
    report["thresholds_chosen"] = {"chosen": chosen, "cv_micro_f1": {k: v["micro_f1"] for k, v in cv.items()}}
    if chosen == "shared":
        head.thresholds = np.full(len(head.labels), best_shared_threshold(probs[rows], y[rows]))
        report["cv"]["head"] = cv["shared"]
    report["thresholds"] = dict(zip(head.labels, np.asarray(head.thresholds).round(3).tolist()))
    log.info("aspect thresholds: %s", json.dumps(report["thresholds_chosen"]))


def with_pass(head, annotator):
    """Record which encoder pass (base + sentiment file) the head's features came from."""
    head.meta["pass"] = annotator.model_tag
    return head


def germeval_fitting_rows(docs, layers_saw: str, cross_fitted: bool = False) -> np.ndarray:
    """GermEval tune documents the heads may be fitted on, given which the encoder's layers trained on.

    Heads fitted on documents the layers memorised get overconfident out-of-fold thresholds (the
    multi-task trial in models/README.md), so when the layers saw one half of tune ('layers' or
    'heads') the heads get the other half. Layers that saw all of tune are refused unless the tune
    pools are ``cross_fitted`` (each document pooled by layers trained on the other half only).
    """
    from stimmung.models.evaluate import germeval_part, germeval_tune_half

    tune = np.array([germeval_part(d) == "tune" for d in docs])
    if layers_saw == "none" or (layers_saw == "all" and cross_fitted):
        return tune
    if layers_saw in TUNE_HALVES:
        return tune & np.array([germeval_tune_half(d) != layers_saw for d in docs])
    raise SystemExit(f"the sentiment layers were trained on GermEval tune rows {layers_saw!r}: heads fitted on them "
                     "would be overconfident; train the layers with --aux-rows layers, or pass --cross-fit with "
                     "two files trained on the 'layers' and 'heads' halves by the same recipe")


def check_cross_fit_files(main_meta: dict, half_metas: dict[str, dict]) -> None:
    """The files behind cross-fitted pools must be the shipped recipe trained on one tune half each."""
    if main_meta.get("germeval_tune_rows") != "all":
        raise SystemExit("--cross-fit is for layers trained on all of GermEval tune (--aux-rows all); the "
                         f"sentiment file says {main_meta.get('germeval_tune_rows', 'none')!r}")
    for half, meta in half_metas.items():
        if meta.get("germeval_tune_rows") != half:
            raise SystemExit(f"--cross-fit {half} file: trained on GermEval tune rows "
                             f"{meta.get('germeval_tune_rows', 'none')!r}, expected {half!r} (--aux-rows {half})")
        for key in ("base", "top_layers", "max_tokens"):
            if meta.get(key) != main_meta.get(key):
                raise SystemExit(f"--cross-fit {half} file: {key} {meta.get(key)!r} differs from the sentiment "
                                 f"file's {main_meta.get(key)!r}")


def cross_fitted_tune_pools(annotator, docs, pools: np.ndarray, files: dict[str, Path], cache_dir: Path) -> np.ndarray:
    """GermEval pools whose tune rows come from layers that never saw them (``files``: half -> file)."""
    from stimmung.models.annotators import E5Annotator
    from stimmung.models.evaluate import germeval_part, germeval_tune_half
    from stimmung.models.feature_cache import PoolCache

    halves = np.array([germeval_tune_half(d) if germeval_part(d) == "tune" else "" for d in docs])
    loaded = {half: E5Annotator(sentiment_file=path, topics=False, heads=False) for half, path in files.items()}
    check_cross_fit_files(annotator.sentiment_meta, {half: a.sentiment_meta for half, a in loaded.items()})
    unseen = {trained: PoolCache(loaded[trained], cache_dir).pools(
                  f"germeval-tune-{other}", [d.text for d, h in zip(docs, halves) if h == other])
              for trained, other in zip(TUNE_HALVES, reversed(TUNE_HALVES))}
    log.info("GermEval tune pools cross-fitted: %s", {h: str(f) for h, f in files.items()})
    return cross_fitted(pools, halves, unseen)


def cross_fitted(pools: np.ndarray, halves: np.ndarray, unseen: dict[str, np.ndarray]) -> np.ndarray:
    """``pools`` with the rows of each tune half (``halves``: 'layers', 'heads' or '' outside tune)
    replaced by ``unseen[h]``: the pools, in row order, that layers trained on the *other* half ``h``
    give them. Rows outside tune are kept."""
    out = pools.copy()
    for trained, other in zip(TUNE_HALVES, reversed(TUNE_HALVES)):
        rows = halves == other
        if len(unseen[trained]) != int(rows.sum()):
            raise ValueError(f"{len(unseen[trained])} pools for the {int(rows.sum())} tune rows of half {other!r}")
        out[rows] = unseen[trained]
    return out


def germeval_targets(docs):
    from stimmung.models.evaluate import GERMEVAL_TO_ASPECT

    relevant = np.array([d.relevant for d in docs])
    complaint = np.array([d.relevant and d.sentiment == "negative" for d in docs])
    aspects = np.array([[any(GERMEVAL_TO_ASPECT.get(c) == a for c in d.categories) for a in ASPECTS] for d in docs])
    return relevant, complaint, aspects


def main(argv: list[str] | None = None) -> int:
    import scipy.sparse as sp
    import torch

    from stimmung.models.annotators import E5Annotator
    from stimmung.models.datasets import read_complaints, read_germeval, read_topic_jsonl, read_umsab
    from stimmung.models.evaluate import germeval_part
    from stimmung.models.feature_cache import DEFAULT_CACHE, PoolCache
    from stimmung.models.features import LONG_TOKENS, TOP_LAYER, WINDOW
    from stimmung.models.lexical import hashed_counts

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=HERE / "heads")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--cross-fit", nargs=2, type=Path, metavar=("LAYERS_FILE", "HEADS_FILE"), default=None,
                   help="for sentiment layers trained on all of GermEval tune: two files of the same recipe trained "
                        "on its 'layers' and 'heads' halves (train_sentiment --aux-rows); each tune document is then "
                        "pooled by the file that did not see it, so the heads may use all of tune")
    p.add_argument("--only", nargs="*",
                   default=["sentiment", "complaint", "relevance", "aspects", "intents", "brand_sentiment"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    torch.set_num_threads(1)
    annotator = E5Annotator(topics=True, heads=False)
    cache = PoolCache(annotator, args.cache)
    report_path = args.out / "train-report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report["protocol"] = (f"{args.folds}-fold stratified CV (seed {args.seed}) on training rows only; figures are mean and sd "
                          "over folds; thresholds and Platt maps per fold fitted on the other folds' out-of-fold predictions")
    docs = read_germeval(args.data / "germeval2017" / "dev.tsv")
    g_pools = cache.pools("germeval-dev", [d.text for d in docs])
    g_long = cache.pools("germeval-dev", [d.text for d in docs], long_tokens=LONG_TOKENS)
    g_counts = hashed_counts([d.text for d in docs])
    heldout_rows = np.array([germeval_part(d) == "heldout" for d in docs])
    tune = germeval_fitting_rows(docs, annotator.sentiment_meta.get("germeval_tune_rows", "none"), bool(args.cross_fit))
    if args.cross_fit:
        g_pools = cross_fitted_tune_pools(annotator, docs, g_pools, dict(zip(TUNE_HALVES, args.cross_fit)), args.cache)
    log.info("GermEval: %d tune documents fit the heads, %d held out", int(tune.sum()), int(heldout_rows.sum()))
    g_rel, g_comp, g_asp = germeval_targets(docs)
    if annotator.topics is None:
        raise RuntimeError("the topic classifier did not load")
    taxonomy = annotator.topics.taxonomy
    heldout = {}

    if "sentiment" in args.only:
        val = read_umsab(args.data / "umsab", "val")
        v_pools = cache.pools("umsab-val", val.texts)
        with torch.inference_mode():
            logits = annotator.encoder.sentiment_head.classifier(torch.from_numpy(v_pools[:, TOP_LAYER]).float()).numpy()
        gold = np.array(val.labels)
        folds = stratified_folds([f"{l}{g}" for l, g in zip(val.languages, gold)], args.folds, args.seed)
        cv_probs = np.zeros_like(logits)
        for f in range(args.folds):
            t = fit_temperature(logits[folds != f], gold[folds != f])
            z = logits[folds == f] / t
            cv_probs[folds == f] = np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
        raw = np.exp(logits - logits.max(1, keepdims=True))
        raw /= raw.sum(1, keepdims=True)
        temperature = fit_temperature(logits, gold)
        report["sentiment"] = {"temperature": round(temperature, 4), "fitted_on": "UMSAB val (2,592 tweets)",
                               "ece_uncalibrated": expected_calibration_error(raw, gold),
                               "ece_cv_calibrated": expected_calibration_error(cv_probs, gold),
                               f"val_macro_f1_window_{WINDOW}": per_language_f1(val.labels, logits.argmax(1).tolist(), val.languages)}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sentiment-calibration.json").write_text(
            json.dumps({"temperature": round(temperature, 4), "pass": annotator.model_tag}) + "\n")
        log.info("sentiment: %s", json.dumps(report["sentiment"]))

    if "complaint" in args.only:
        rows = read_complaints(args.data / "complaints" / "train.csv")
        c_pools = cache.pools("complaints-train", [r.text for r in rows])
        pools = np.concatenate([c_pools, g_pools[tune]]).astype(np.float32)
        counts = sp.vstack([hashed_counts([r.text for r in rows]), g_counts[tune]]).tocsr()
        y = np.concatenate([[r.complaint for r in rows], g_comp[tune]]).astype(int)
        source = np.array(["en"] * len(rows) + ["de"] * int(tune.sum()))
        folds = stratified_folds([f"{s}{v}" for s, v in zip(source, y)], args.folds, args.seed)
        proto = prototype_scores(annotator, pools, ["complaint"]) >= 0.5
        head, rep, pred, logits = train_head(
            "complaint", ["complaint"], pools, y, folds, with_and_without_text((0.25, 1.0, 4.0, 16.0), LAYER_CHOICES,
                                                                              (False, True), (1.0, 4.0, 16.0)),
            binary_fig, "macro_f1", True,
            {"trained_on": "complaints/train.csv (en, gold) + GermEval 2017 dev tune part (de, weak: relevant+negative)"},
            proto, np.ones(len(y), bool), counts)
        for lang in ("en", "de"):
            rep["cv"][f"head_{lang}"] = fold_figures(y.reshape(-1, 1), pred, folds, source == lang, binary_fig)
            rep["cv"][f"prototype_{lang}"] = fold_figures(y.reshape(-1, 1), proto, folds, source == lang, binary_fig)
        # German posts get their own threshold (their calibrated probabilities run lower: weak labels,
        # a minority of the rows), chosen like the global one on out-of-fold probabilities of the
        # German rows only; GermEval held-out stays unseen.
        probs = cross_validated_platt(logits[:, 0], y, folds)  # the chosen configuration's out-of-fold logits
        de = source == "de"
        german = best_threshold(probs[de], y[de].astype(bool), True)
        head.meta["language_thresholds"] = json.dumps({"de": [german]})
        rep["language_thresholds"] = {"de": german, "chosen_on": "out-of-fold probabilities of the German training rows"}
        en = source == "en"
        domains = np.array([r.domain for r in rows])
        rep["cv_en_by_domain_pooled"] = {d: binary_figures(y[en][domains == d].astype(bool), pred[en][domains == d, 0])
                                         for d in sorted(set(domains))}
        report["complaint"] = rep
        with_pass(head, annotator).save(args.out / "complaint.safetensors")
        heldout["complaint"] = head

    if "relevance" in args.only:
        y = g_rel[tune].astype(int)
        folds = stratified_folds(y, args.folds, args.seed)
        mapped_fires = prototype_scores(annotator, g_pools[tune].astype(np.float32), ASPECTS).max(1) >= 0.5
        head, rep, _, _ = train_head(
            "relevance", ["relevant"], g_pools[tune].astype(np.float32), y, folds,
            with_and_without_text((0.25, 1.0, 4.0, 16.0), LAYER_CHOICES, (False, True), (1.0, 4.0, 16.0)),
            binary_fig, "accuracy", False, {"trained_on": "GermEval 2017 dev tune part (relevance)"}, mapped_fires,
            np.ones(len(y), bool), g_counts[tune])
        report["relevance"] = rep
        with_pass(head, annotator).save(args.out / "relevance.safetensors")
        heldout["relevance"] = head

    if "aspects" in args.only:
        examples = [(e, l) for l in taxonomy.labels for e in (l.description, *l.examples)]
        t_pools = cache.pools("taxonomy-examples", [e for e, _ in examples])
        t_y = np.array([[l.name == a for a in ASPECTS] for _, l in examples])
        pools = np.concatenate([g_pools[tune], t_pools]).astype(np.float32)
        counts = sp.vstack([g_counts[tune], hashed_counts([e for e, _ in examples])]).tocsr()
        y = np.concatenate([g_asp[tune], t_y]).astype(int)
        folds = np.concatenate([stratified_folds(g_asp[tune].argmax(1) * g_asp[tune].any(1), args.folds, args.seed),
                                np.full(len(examples), -1)])
        proto = prototype_scores(annotator, pools, ASPECTS) >= 0.5
        head, rep, _, logits = train_head(
            "aspects", ASPECTS, pools, y, folds, with_and_without_text((0.5, 2.0), LAYER_CHOICES[:3], (False, True), (0.5, 2.0)),
            multilabel_fig(ASPECTS), "micro_f1", False,
            {"trained_on": "GermEval 2017 dev tune part (mapped categories) + taxonomy examples"}, proto, folds >= 0, counts)
        choose_aspect_thresholds(head, rep, logits, y, folds)
        report["aspects"] = rep
        with_pass(head, annotator).save(args.out / "aspects.safetensors")
        heldout["aspects"] = head

    if "brand_sentiment" in args.only:
        tweets = read_umsab(args.data / "umsab", "val")
        gold = np.concatenate([[SENTIMENTS.index(d.sentiment) for d in np.array(docs, dtype=object)[tune]],
                               tweets.labels]).astype(int)
        parts = np.array(["germeval"] * int(tune.sum()) + [f"umsab-{lang}" for lang in tweets.languages])
        weight = np.where(parts == "germeval", 1.0, BRAND_SENTIMENT_TWEET_WEIGHT)
        head, rep = train_exclusive_head(
            "brand_sentiment", list(SENTIMENTS),
            np.concatenate([g_pools[tune], cache.pools("umsab-val", tweets.texts)]).astype(np.float32), gold,
            stratified_folds([f"{p}{g}" for p, g in zip(parts, gold)], args.folds, args.seed),
            with_and_without_text((1.0, 4.0, 16.0), LAYER_CHOICES, (False,), (1.0, 4.0, 16.0)),
            {"trained_on": f"GermEval 2017 dev tune part (document sentiment toward the company) + UMSAB val "
                           f"(8 languages, weight {BRAND_SENTIMENT_TWEET_WEIGHT})", "decision": "argmax"},
            parts, weight, sp.vstack([g_counts[tune], hashed_counts(tweets.texts)]).tocsr())
        report["brand_sentiment"] = rep
        with_pass(head, annotator).save(args.out / "brand_sentiment.safetensors")
        heldout["brand_sentiment"] = head

    if "intents" in args.only:
        written = read_topic_jsonl(HERE / "train" / "intents_v1.jsonl")
        labelled: list[tuple[str, set[str]]] = [(e, {l.name}) for l in taxonomy.labels for e in (l.description, *l.examples)]
        labelled += [(w.text, set(w.topics)) for w in written]
        pools = cache.pools("intent-examples", [t for t, _ in labelled]).astype(np.float32)
        y = np.array([[i in labels for i in INTENTS] for _, labels in labelled]).astype(int)
        folds = stratified_folds(y.argmax(1) * y.any(1), 5, args.seed)
        config = Config((8, 12), 1.0, True)  # fixed: selecting on written data would only fit our writing
        logits = out_of_fold_logits(pools, y, folds, config)
        head = fit_head("intents", INTENTS, pools, y, config, logits, [0.5] * len(INTENTS),
                        {"trained_on": f"{len(written)} written examples (models/train/intents_v1.jsonl) + taxonomy examples",
                         "quality": "not measured: no real labelled data"})
        with_pass(head, annotator).save(args.out / "intents.safetensors")
        report["intents"] = {"config": config.describe(), "examples": len(labelled),
                             "quality": "not measured: no real labelled intent data exists"}

    report["germeval_heldout"] = germeval_heldout(annotator, heldout, docs, g_pools, g_long, heldout_rows,
                                                  (g_rel, g_comp, g_asp), report.get("germeval_heldout", {}), g_counts)
    report_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report.get("germeval_heldout"), indent=2))
    return 0


def germeval_heldout(annotator, heads, docs, g_pools, g_long, rows, targets, previous, g_counts) -> dict:
    """The final figures (scored once, after selection): one head+tail window, and windows up to LONG_TOKENS."""
    from stimmung.models.evaluate import detected_languages
    from stimmung.models.features import LONG_TOKENS, WINDOW, sentiment_probs

    out = dict(previous)
    gold = dict(zip(("relevance", "complaint", "aspects"), (t[rows] for t in targets)))
    languages = detected_languages([d.text for d in np.array(docs, dtype=object)[rows]])

    for variant, pools in ((f"head_tail_{WINDOW}", g_pools[rows]), (f"windows_{LONG_TOKENS}", g_long[rows])):
        pools = pools.astype(np.float32)
        fig = out.setdefault(variant, {"documents": int(rows.sum())})
        sentiment = sentiment_probs(annotator.encoder, pools).argmax(1)
        fig["sentiment_micro_f1"] = round(100 * float(np.mean([("negative", "neutral", "positive")[s] == d.sentiment
                                                                for s, d in zip(sentiment, np.array(docs, dtype=object)[rows])])), 2)
        proto = np.asarray(prototype_scores(annotator, pools, ASPECTS + ["complaint"]) >= 0.5)
        baseline: dict[str, np.ndarray] = {"aspects": proto[:, :-1], "complaint": proto[:, -1:], "relevance": np.asarray(proto[:, :-1].any(1, keepdims=True))}
        fig["prototype"] = {"relevance": binary_figures(gold["relevance"], baseline["relevance"][:, 0]),
                            "complaint": binary_figures(gold["complaint"], baseline["complaint"][:, 0]),
                            "aspects_micro_f1": micro_f1(gold["aspects"], baseline["aspects"])}
        for name, head in heads.items():
            probs = head.probabilities(pools, g_counts[rows])  # the whole text's n-grams, whatever the window
            pred = head.decide(probs, languages)
            if name == "brand_sentiment":
                gold_sentiment = np.array([SENTIMENTS.index(d.sentiment) for d in np.array(docs, dtype=object)[rows]])
                fig[name] = {"micro_f1": round(100 * float(np.mean(probs.argmax(1) == gold_sentiment)), 2),
                             "ece": expected_calibration_error(probs, gold_sentiment),
                             "majority_class": round(100 * float(np.mean(gold_sentiment == 1)), 2)}
                continue
            g = gold[name].reshape(len(pools), -1)
            if name == "aspects":
                fig[name] = {"micro_f1": micro_f1(g, pred), "ece": {l: expected_calibration_error(probs[:, j], g[:, j])
                                                                   for j, l in enumerate(head.labels)},
                             "labels": {l: binary_figures(g[:, j], pred[:, j]) for j, l in enumerate(head.labels)}}
            else:
                fig[name] = dict(binary_figures(g[:, 0], pred[:, 0]), ece=expected_calibration_error(probs[:, 0], g[:, 0]))
    return out


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
