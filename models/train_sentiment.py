"""Train the sentiment model: fine-tune e5-small's top layers on UMSAB train (all languages).

    python -m stimmung.models.train_sentiment --umsab ../shared/data/umsab --out models/sentiment/sentiment-head.safetensors

Method (see models/README.md): the embeddings and the lower 8 layers stay frozen; their output
is computed once and cached, then the top 4 layers and a linear head are trained with AdamW on
cross-entropy, evaluated on UMSAB val after every epoch, and the best epoch (macro-F1 over all
languages) is kept. The frozen-encoder baseline (mean-pooled e5 embeddings + logistic
regression) is measured in the same run on the same split, and both are printed per language.
Finally the topic projection is fitted (ridge regression from the pooled trunk and fine-tuned
outputs onto e5's original embedding, so that one pass serves both sentiment and topics; see
encoder.py) and saved in the same file. ``--projection-only`` fits it for an existing file
without retraining. ``--cv K`` only cross-validates the recipe (K folds over train + val pooled,
fixed epochs, mean ± sd per language, the frozen baseline beside it) and writes no model.

``--germeval DEV.tsv`` makes it multi-task (issue #17): the *tune* part of GermEval 2017 dev
(never its held-out part) trains the same top layers on auxiliary targets at once - relevance
and document sentiment toward the company by default (``--aux-tasks``; the mapped aspects too
on request) - through a throw-away linear head on the same pool. The trained heads
(train_heads.py) then read layers that have seen German customer feedback, not only tweets.
With ``--cv`` the GermEval rows join every fold's training rows; the UMSAB rows are scored as
before.
Training is a separate command, never part of CI (about 20-30 minutes on 2
cores; the projection alone about 5).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from stimmung.models.datasets import Split, read_umsab
from stimmung.models.e5_base import build_base_encoder
from stimmung.models.encoder import (
    MAX_TOKENS,
    TOP,
    SharedEncoder,
    load_base,
    load_sentiment,
    mean_pool,
    projection_features,
    save_sentiment,
    sentiment_top_layers,
    tokenize,
)
from stimmung.models.metrics import per_language_f1

log = logging.getLogger("train_sentiment")


def cache_trunk(encoder: SharedEncoder, tokenizer, texts: list[str], batch: int = 64, desc: str = "trunk"):
    """Run the frozen part once; return per-example (hidden states [T,H] fp16, length)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # length buckets: less padding
    states: list[torch.Tensor | None] = [None] * len(texts)
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), batch), desc=desc, unit=" batches"):
            idx = order[start:start + batch]
            ids, mask = tokenize(tokenizer, [texts[i] for i in idx])
            h = encoder.run_trunk(ids, mask)
            lengths = mask.sum(1).tolist()
            for row, i in enumerate(idx):
                states[i] = h[row, : lengths[row]].to(torch.float16).clone()
    return states


def collate(states, indices):
    longest = max(states[i].shape[0] for i in indices)
    hidden = states[indices[0]].shape[1]
    x = torch.zeros(len(indices), longest, hidden)
    mask = torch.zeros(len(indices), longest, dtype=torch.long)
    for row, i in enumerate(indices):
        n = states[i].shape[0]
        x[row, :n] = states[i].float()
        mask[row, :n] = 1
    return x, mask


def batches_by_length(states, indices, batch: int, shuffle: bool, rng: random.Random):
    idx = sorted(indices, key=lambda i: states[i].shape[0])
    groups = [idx[s:s + batch] for s in range(0, len(idx), batch)]
    if shuffle:
        rng.shuffle(groups)
    return groups


def predict(head, states, batch: int = 128) -> np.ndarray:
    head.eval()
    out = np.zeros((len(states), 3), dtype=np.float32)
    with torch.inference_mode():
        for group in batches_by_length(states, list(range(len(states))), batch, False, random.Random(0)):
            x, mask = collate(states, group)
            out[group] = torch.softmax(head(x, mask), dim=-1).numpy()
    return out


def frozen_embeddings(encoder: SharedEncoder, states, batch: int = 128) -> np.ndarray:
    out = np.zeros((len(states), encoder.hidden), dtype=np.float32)
    with torch.inference_mode():
        for group in batches_by_length(states, list(range(len(states))), batch, False, random.Random(0)):
            x, mask = collate(states, group)
            out[group] = encoder.run_original_top(x, mask).numpy()
    return out


def projection_inputs(encoder: SharedEncoder, states, batch: int = 128) -> np.ndarray:
    out = np.zeros((len(states), 2 * encoder.hidden), dtype=np.float32)
    with torch.inference_mode():
        for group in batches_by_length(states, list(range(len(states))), batch, False, random.Random(0)):
            x, mask = collate(states, group)
            out[group] = projection_features(x, encoder.sentiment_head.hidden_states(x, mask), mask).numpy()
    return out


def fit_topic_projection(encoder: SharedEncoder, train_states, val_states, alpha: float = 0.1,
                         teacher_train: np.ndarray | None = None) -> dict:
    """Ridge regression onto e5's original embedding; returns the fit's figures (val fidelity)."""
    from sklearn.linear_model import Ridge

    encoder.sentiment_head.eval()
    teacher = frozen_embeddings(encoder, train_states) if teacher_train is None else teacher_train
    ridge = Ridge(alpha=alpha).fit(projection_inputs(encoder, train_states), teacher)
    projection = encoder.new_topic_projection()
    with torch.no_grad():
        projection.weight.copy_(torch.from_numpy(ridge.coef_.astype(np.float32)))
        projection.bias.copy_(torch.from_numpy(np.asarray(ridge.intercept_, dtype=np.float32)))
    with torch.inference_mode():
        mapped = torch.nn.functional.normalize(projection(torch.from_numpy(projection_inputs(encoder, val_states))), dim=-1)
    cosine = (mapped.numpy() * frozen_embeddings(encoder, val_states)).sum(1)
    figures = {"method": f"ridge(alpha={alpha}) on UMSAB train", "val_mean_cosine": round(float(cosine.mean()), 4),
               "val_p5_cosine": round(float(np.percentile(cosine, 5)), 4)}
    log.info("topic projection: %s", json.dumps(figures))
    return figures


AUX_TASKS = ("relevance", "sentiment", "aspects")
# Aspects are off by default: trained into the layers, the rare aspect labels of the 1,167 tune
# documents are memorised, the aspect head's out-of-fold thresholds (fitted on those same
# documents) come out far too confident, and held-out aspect micro-F1 fell from 37.5 to 11.5.
DEFAULT_AUX_TASKS = ("relevance", "sentiment")


@dataclass
class AuxiliaryTask:
    """GermEval tune rows for multi-task training: cached trunk states and their three targets."""
    states: list
    sentiment: torch.Tensor  # [N] 0/1/2 toward the company
    relevance: torch.Tensor  # [N] 0./1.
    aspects: torch.Tensor  # [N, len(ASPECTS)] 0./1.
    tasks: tuple[str, ...] = AUX_TASKS  # which of the three train the layers

    @property
    def outputs(self) -> int:
        return 3 + 1 + self.aspects.shape[1]

    def loss(self, logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
        f = torch.nn.functional
        parts = {"sentiment": lambda: f.cross_entropy(logits[:, :3], self.sentiment[rows]),
                 "relevance": lambda: f.binary_cross_entropy_with_logits(logits[:, 3], self.relevance[rows]),
                 "aspects": lambda: f.binary_cross_entropy_with_logits(logits[:, 4:], self.aspects[rows])}
        return sum((parts[task]() for task in self.tasks), torch.zeros(()))


def germeval_auxiliary(encoder: SharedEncoder, tokenizer, path: Path,
                       tasks: tuple[str, ...] = DEFAULT_AUX_TASKS, rows: str = "all") -> AuxiliaryTask:
    """The tune part of GermEval 2017 dev (evaluate.germeval_part) as an auxiliary task.

    ``rows="layers"`` keeps only the tune half the layers may see (evaluate.germeval_tune_half);
    the model file records it, and train_heads then fits the heads on the other half only.
    """
    from stimmung.models.datasets import LABELS, read_germeval
    from stimmung.models.evaluate import germeval_part, germeval_tune_half
    from stimmung.models.train_heads import germeval_targets

    docs = [d for d in read_germeval(path)
            if germeval_part(d) == "tune" and (rows == "all" or germeval_tune_half(d) == rows)]
    relevant, _, aspects = germeval_targets(docs)
    log.info("GermEval tune (auxiliary tasks, %s rows): %d documents", rows, len(docs))
    return AuxiliaryTask(cache_trunk(encoder, tokenizer, [d.text for d in docs], desc="trunk(germeval tune)"),
                         torch.tensor([LABELS.index(d.sentiment) for d in docs]),
                         torch.tensor(relevant, dtype=torch.float32), torch.tensor(aspects, dtype=torch.float32),
                         tasks)


def fine_tune(encoder: SharedEncoder, states, labels: list[int], args: argparse.Namespace, rng: random.Random,
              on_epoch: Callable[[Any, int, float], None] | None = None, aux: AuxiliaryTask | None = None):
    """A fresh copy of the top layers + classifier, trained ``args.epochs`` epochs with AdamW
    (linear warm-up and decay) on cross-entropy; ``on_epoch(head, epoch, mean loss)`` after each.
    With ``aux``, its batches (repeated ``args.aux_repeat`` times per epoch) are mixed in and train
    the same layers through a throw-away linear head, their loss weighted by ``args.aux_weight``."""
    head = encoder.new_sentiment_head()
    for param in head.parameters():
        param.requires_grad_(True)
    aux_head = torch.nn.Linear(encoder.hidden, aux.outputs) if aux else None
    optim = torch.optim.AdamW([
        {"params": head.layers.parameters(), "lr": args.lr},
        {"params": [*head.classifier.parameters(), *(aux_head.parameters() if aux_head else [])], "lr": args.head_lr},
    ], weight_decay=0.01)

    def epoch_batches() -> list[tuple[str, list[int]]]:
        groups = [("umsab", g) for g in batches_by_length(states, list(range(len(states))), args.batch, True, rng)]
        if aux:
            for _ in range(args.aux_repeat):
                groups += [("aux", g) for g in batches_by_length(aux.states, list(range(len(aux.states))), args.batch, True, rng)]
            rng.shuffle(groups)
        return groups

    steps_per_epoch = math.ceil(len(states) / args.batch) + (
        args.aux_repeat * math.ceil(len(aux.states) / args.batch) if aux else 0)
    total = steps_per_epoch * args.epochs
    warmup = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / max(1, total - warmup)))
    target = torch.tensor(labels)
    for epoch in range(1, args.epochs + 1):
        head.train()
        if aux_head:
            aux_head.train()
        losses = []
        for source, group in tqdm(epoch_batches(), desc=f"epoch {epoch}", unit=" batches"):
            if source == "aux":
                assert aux is not None and aux_head is not None
                x, mask = collate(aux.states, group)
                pooled = head.dropout(mean_pool(head.hidden_states(x, mask), mask))
                loss = args.aux_weight * aux.loss(aux_head(pooled), group)
            else:
                x, mask = collate(states, group)
                loss = torch.nn.functional.cross_entropy(head(x, mask), target[group])
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*head.parameters(), *(aux_head.parameters() if aux_head else [])], 1.0)
            optim.step()
            sched.step()
            losses.append(loss.item())
        if on_epoch:
            on_epoch(head, epoch, float(np.mean(losses)))
    return head


def cross_validate(encoder: SharedEncoder, states, split: Split, args: argparse.Namespace,
                   aux: AuxiliaryTask | None = None) -> dict:
    """k-fold CV of the recipe on train + val pooled (folds stratified by language and label):
    each fold trains a fresh head for the fixed ``args.epochs`` (no epoch picked on the fold it
    is scored on) and the frozen-encoder baseline on the same rows; figures are mean ± sd over
    folds, per language, over all rows pooled ('all') and as the mean of the languages."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    strata = [f"{lang}/{label}" for lang, label in zip(split.languages, split.labels)]
    folds = StratifiedKFold(n_splits=args.cv, shuffle=True, random_state=args.seed).split(np.zeros(len(strata)), strata)
    frozen = frozen_embeddings(encoder, states)
    per_fold: dict[str, list[dict[str, float]]] = {"fine_tuned": [], "baseline": []}
    chosen = args.cv_folds or list(range(1, args.cv + 1))
    for k, (train_rows, test_rows) in enumerate(folds, 1):
        if k not in chosen:
            continue  # the same split and per-fold seeds as a full run, so folds pair up with its report
        started = time.monotonic()
        rng = random.Random(args.seed + k)
        torch.manual_seed(args.seed + k)
        head = fine_tune(encoder, [states[i] for i in train_rows], [split.labels[i] for i in train_rows], args, rng,
                         aux=aux)
        gold, langs = [split.labels[i] for i in test_rows], [split.languages[i] for i in test_rows]
        pred = predict(head, [states[i] for i in test_rows]).argmax(1).tolist()
        baseline = LogisticRegression(max_iter=2000, C=1.0).fit(frozen[train_rows], [split.labels[i] for i in train_rows])
        for name, p in (("fine_tuned", pred), ("baseline", baseline.predict(frozen[test_rows]).tolist())):
            f1 = per_language_f1(gold, p, langs)
            f1["mean_of_languages"] = float(np.mean([v for lang, v in f1.items() if lang != "all"]))
            per_fold[name].append(f1)
        log.info("fold %d/%d (%.0fs): fine-tuned %s", k, args.cv, time.monotonic() - started,
                 json.dumps({key: round(v, 2) for key, v in per_fold["fine_tuned"][-1].items()}))

    def summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
        return {key: {"mean": round(float(np.mean([r[key] for r in rows])), 2),
                      "sd": round(float(np.std([r[key] for r in rows], ddof=1)), 2) if len(rows) > 1 else 0.0}
                for key in rows[0]}

    return {"protocol": f"{args.cv}-fold CV on UMSAB train+val pooled ({len(strata)} tweets), stratified by language "
                        f"and label, seed {args.seed}; {args.epochs} epochs per fold, no selection on the scored fold"
                        + (f"; multi-task: GermEval 2017 tune ({len(aux.states)} documents, {', '.join(aux.tasks)}; weight {args.aux_weight}, x{args.aux_repeat} per epoch) in every fold's training" if aux else ""),
            "fine_tuned": summary(per_fold["fine_tuned"]), "baseline_frozen_e5_logreg": summary(per_fold["baseline"]),
            "fold_numbers": chosen, "folds": per_fold}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--umsab", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()))
    p.add_argument("--limit", type=int, default=0, help="use only N training examples (smoke runs)")
    p.add_argument("--report", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument("--cv", type=int, default=0, metavar="K",
                   help="only cross-validate the recipe: K folds over train+val, figures as mean ± sd (writes no model)")
    p.add_argument("--cv-folds", default="", metavar="K1,K2",
                   help="with --cv: run only these folds (1-based) of the same split, to pair them with a full run's report")
    p.add_argument("--germeval", type=Path, default=None, metavar="DEV_TSV",
                   help="multi-task: GermEval 2017 dev.tsv, whose tune part trains the same layers on relevance, "
                        "document sentiment and aspects")
    p.add_argument("--aux-tasks", default=",".join(DEFAULT_AUX_TASKS),
                   help=f"comma-separated, of {','.join(AUX_TASKS)} (with --germeval)")
    p.add_argument("--aux-rows", choices=("all", "layers", "heads"), default="all",
                   help="GermEval tune rows that train the layers: all, or one half ('layers' or 'heads'); "
                        "train_heads reads this from the model file and fits the heads on rows these layers did "
                        "not see (the other half, or all of tune from two cross-fitted half-trained files)")
    p.add_argument("--aux-weight", type=float, default=1.0, help="weight of the GermEval loss (with --germeval)")
    p.add_argument("--aux-repeat", type=int, default=2, help="GermEval batches per epoch, in passes (with --germeval)")
    p.add_argument("--top-layers", type=int, default=TOP,
                   help=f"how many of e5's 12 layers to fine-tune (default {TOP}; 12 = all, embeddings frozen); "
                        "the model file records it and the runtime splits the encoder there")
    p.add_argument("--projection-only", action="store_true",
                   help="keep the trained head in --out; only (re)fit its topic projection")
    args = p.parse_args(argv)
    tasks = tuple(t for t in args.aux_tasks.split(",") if t)
    if unknown := set(tasks) - set(AUX_TASKS):
        p.error(f"--aux-tasks: unknown {sorted(unknown)}; choose from {','.join(AUX_TASKS)}")
    try:
        args.cv_folds = sorted({int(k) for k in args.cv_folds.split(",") if k.strip()})
    except ValueError:
        p.error(f"--cv-folds: {args.cv_folds!r} is not a comma-separated list of fold numbers")
    if args.cv_folds and not (args.cv and all(1 <= k <= args.cv for k in args.cv_folds)):
        p.error(f"--cv-folds: needs --cv K and fold numbers within 1..K (got {args.cv_folds}, --cv {args.cv})")
    if not 1 <= args.top_layers <= 12:
        p.error(f"--top-layers: {args.top_layers} is outside 1..12")
    if args.projection_only and args.out.is_file():
        args.top_layers = sentiment_top_layers(args.out)  # the file decides where the encoder splits
    if args.germeval and not args.germeval.is_file():
        p.error(f"--germeval: no such file {args.germeval}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)

    train = read_umsab(args.umsab, "train")
    val = read_umsab(args.umsab, "val")
    if args.limit:
        keep = sorted(rng.sample(range(len(train.texts)), args.limit))
        train = Split([train.texts[i] for i in keep], [train.labels[i] for i in keep], [train.languages[i] for i in keep])
    log.info("UMSAB: %d train, %d val examples", len(train.texts), len(val.texts))

    if args.cv:
        train = Split(train.texts + val.texts, train.labels + val.labels, train.languages + val.languages)
    base_dir = build_base_encoder()
    tokenizer, base = load_base(base_dir)
    encoder = SharedEncoder(base, args.top_layers)
    for param in encoder.parameters():
        param.requires_grad_(False)
    started = time.monotonic()
    train_states = cache_trunk(encoder, tokenizer, train.texts, desc="trunk(train)")
    aux = germeval_auxiliary(encoder, tokenizer, args.germeval, tasks, args.aux_rows) if args.germeval and not args.projection_only else None
    if args.cv:
        result = cross_validate(encoder, train_states, train, args, aux)
        result["seconds"] = round(time.monotonic() - started, 1)
        if args.report:
            args.report.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "folds"}, indent=2))
        return 0
    val_states = cache_trunk(encoder, tokenizer, val.texts, desc="trunk(val)")
    log.info("trunk cached in %.0fs", time.monotonic() - started)

    if args.projection_only:
        meta = load_sentiment(encoder, args.out)
        figures = fit_topic_projection(encoder, train_states, val_states)
        meta["topic_projection"] = json.dumps(figures)
        save_sentiment(encoder.sentiment_head, args.out, meta, encoder.topic_projection)
        if args.report and args.report.is_file():
            report = json.loads(args.report.read_text())
            report["topic_projection"] = figures
            args.report.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(figures, indent=2))
        return 0

    # Baseline, same run, same split: frozen encoder embeddings + logistic regression.
    from sklearn.linear_model import LogisticRegression

    baseline = LogisticRegression(max_iter=2000, C=1.0)
    teacher_train = frozen_embeddings(encoder, train_states)  # also the topic projection's target
    baseline.fit(teacher_train, train.labels)
    base_pred = baseline.predict(frozen_embeddings(encoder, val_states))
    baseline_f1 = per_language_f1(val.labels, base_pred.tolist(), val.languages)
    log.info("baseline (frozen e5 + logistic regression) val macro-F1: %s", json.dumps(baseline_f1))

    history: list[dict] = []
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})  # (macro-F1, epoch, weights)

    def on_epoch(head, epoch: int, loss: float) -> None:
        nonlocal best
        pred = predict(head, val_states).argmax(1)
        f1 = per_language_f1(val.labels, pred.tolist(), val.languages)
        history.append({"epoch": epoch, "loss": loss, "val_macro_f1": f1})
        log.info("epoch %d loss %.4f val macro-F1 %s", epoch, loss, json.dumps(f1))
        if f1["all"] > best[0]:
            best = (f1["all"], epoch, {k: v.detach().clone() for k, v in head.state_dict().items()})

    head = fine_tune(encoder, train_states, train.labels, args, rng, on_epoch, aux)
    head.load_state_dict(best[2])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": f"stimmung-sentiment-e5small-top{args.top_layers}",
        "trained_on": "UMSAB train (8 languages)" + (
            f" + GermEval 2017 dev tune part (multi-task: {', '.join(aux.tasks)}; weight "
            f"{args.aux_weight}, x{args.aux_repeat} per epoch)" if aux else ""),
        "selected_on": "UMSAB val", "epoch": str(best[1]), "top_layers": str(args.top_layers), "max_tokens": str(MAX_TOKENS),
        "base": base_dir.name, "seed": str(args.seed),
        # train_heads reads this: heads must not be fitted on GermEval documents these layers saw.
        "germeval_tune_rows": args.aux_rows if aux else "none",
    }
    projection = fit_topic_projection(encoder, train_states, val_states, teacher_train=teacher_train)
    meta["topic_projection"] = json.dumps(projection)
    save_sentiment(head, args.out, meta, encoder.topic_projection)
    report = {"meta": meta, "history": history, "baseline_val_macro_f1": baseline_f1,
              "best_val_macro_f1": history[best[1] - 1]["val_macro_f1"], "topic_projection": projection,
              "seconds": time.monotonic() - started}
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
