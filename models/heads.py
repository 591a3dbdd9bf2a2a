"""Trained heads on the shared pass: calibrated linear classifiers over pooled layers.

A head is a set of one-vs-rest logistic regressions (one per label) over the concatenated,
L2-normalised mean pools of a few layers of the one encoder pass (features.py). Each label's
logit ``z`` is calibrated by Platt scaling, ``p = sigmoid(a * z + b)``, fitted on out-of-fold
logits (the model that produced a logit never saw that example), and decided by a threshold
on the calibrated probability (chosen on out-of-fold predictions of the training data).
An *exclusive* head (``meta["decision"] == "argmax"``, e.g. brand sentiment: negative, neutral or
positive) normalises its calibrated probabilities to sum to one and decides the most probable label.

A head may also read the text itself: character n-gram TF-IDF features (lexical.py) beside
the pools, weighted by the head's ``lexical`` scale; the choice is made by cross-validation like
the rest of the configuration. A pools-only head costs one small matrix product per batch; the
n-grams add one hashing pass per batch (shared by all heads) and a sparse product per head:
together about 0.35 ms per post, 3-4 % of the encoder pass (benchmarks/RESULTS.md).
Files are safetensors (fp16 weights; labels, layers, calibration and the training figures in
the metadata), found by the enricher in ``models/heads/`` (builtin) and in
the operator's custom heads directory (``stimmung models train-labels``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from stimmung.models.features import normalized
from stimmung.models.lexical import LexicalFeatures, hashed_counts


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


def normalized_rows(probs: np.ndarray) -> np.ndarray:
    """One-vs-rest calibrated probabilities of mutually exclusive labels, rescaled to sum to one."""
    return probs / np.maximum(probs.sum(1, keepdims=True), 1e-12)


@dataclass
class LinearHead:
    name: str
    labels: list[str]
    layers: tuple[int, ...]
    weight: np.ndarray  # [labels, features]
    bias: np.ndarray  # [labels]
    platt: np.ndarray | None = None  # [labels, 2]: a, b (identity when None)
    thresholds: np.ndarray | None = None  # [labels], on calibrated probabilities (0.5 when None)
    meta: dict = field(default_factory=dict)
    lexical: LexicalFeatures | None = None  # character n-grams of the text beside the pools
    lexical_weight: np.ndarray | None = None  # [labels, lexical columns]

    def __post_init__(self):
        n = len(self.labels)
        if self.platt is None:
            self.platt = np.tile([1.0, 0.0], (n, 1))
        if self.thresholds is None:
            self.thresholds = np.full(n, 0.5)

    def logits(self, pools: np.ndarray, counts=None) -> np.ndarray:
        """``counts``: ``lexical.hashed_counts`` of the same posts (needed by a head that reads text)."""
        z = normalized(pools, self.layers) @ self.weight.T + self.bias
        if self.lexical is not None and self.lexical_weight is not None:
            if counts is None:
                raise ValueError(f"head {self.name} reads the text beside the pools: pass the posts' hashed counts")
            if counts.shape[0] != len(pools):
                raise ValueError(f"head {self.name}: {counts.shape[0]} texts for {len(pools)} pooled posts")
            z = z + np.asarray(self.lexical.transform(counts) @ self.lexical_weight.T)
        return z

    @staticmethod
    def _filled(value: np.ndarray | None) -> np.ndarray:
        if value is None:  # __post_init__ fills platt and thresholds
            raise ValueError("head used before its calibration was set")
        return value

    @property
    def exclusive(self) -> bool:
        """One label per post (argmax), not independent yes/no decisions."""
        return self.meta.get("decision") == "argmax"

    def probabilities(self, pools: np.ndarray, counts=None) -> np.ndarray:
        """``[N, labels]`` calibrated probabilities (an exclusive head's rows sum to one)."""
        platt = self._filled(self.platt)
        probs = sigmoid(self.logits(pools, counts) * platt[:, 0] + platt[:, 1])
        return normalized_rows(probs) if self.exclusive else probs

    def thresholds_for(self, language: str | None) -> np.ndarray:
        """The decision thresholds for posts in ``language``: the head's own where training chose
        one for that language (``meta["language_thresholds"]``, e.g. German complaints, whose
        calibrated probabilities run lower than English ones), else the global ones."""
        by_language = self.meta.get("language_thresholds")
        if by_language and language:
            chosen = json.loads(by_language) if isinstance(by_language, str) else by_language
            if language in chosen:
                return np.asarray(chosen[language], dtype=np.float64)
        return self._filled(self.thresholds)

    def decide(self, probs: np.ndarray, languages: Sequence[str | None] | None = None) -> np.ndarray:
        if self.exclusive:
            return np.eye(len(self.labels), dtype=bool)[probs.argmax(1)]
        if not languages or not self.meta.get("language_thresholds"):
            return probs >= self._filled(self.thresholds)
        if len(probs) == 0:
            return probs.astype(bool)
        return np.stack([probs[i] >= self.thresholds_for(lang) for i, lang in enumerate(languages)])

    def save(self, path: Path) -> None:
        import torch
        from safetensors.torch import save_file

        tensors = {"weight": torch.from_numpy(np.asarray(self.weight, dtype=np.float16)),
                   "bias": torch.from_numpy(np.asarray(self.bias, dtype=np.float32)),
                   "platt": torch.from_numpy(np.asarray(self.platt, dtype=np.float32)),
                   "thresholds": torch.from_numpy(np.asarray(self.thresholds, dtype=np.float32))}
        meta = {"name": self.name, "labels": json.dumps(self.labels), "layers": json.dumps(list(self.layers)),
                **{k: v if isinstance(v, str) else json.dumps(v) for k, v in self.meta.items()}}
        if self.lexical is not None and self.lexical_weight is not None:
            tensors.update({"lexical_columns": torch.from_numpy(np.asarray(self.lexical.columns, dtype=np.int64)),
                            "lexical_idf": torch.from_numpy(np.asarray(self.lexical.idf, dtype=np.float32)),
                            "lexical_weight": torch.from_numpy(np.asarray(self.lexical_weight, dtype=np.float16))})
            meta["lexical_scale"] = str(self.lexical.scale)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)

    @classmethod
    def load(cls, path: Path) -> "LinearHead":
        """A head file, checked whole: a damaged or incomplete file is refused here with a ValueError
        naming it, never loaded to fail (or worse, score differently) on the stream later."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "np") as fh:
                meta = dict(fh.metadata() or {})
                t = {k: fh.get_tensor(k) for k in fh.keys()}
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path} is not a readable head file ({err})") from None
        try:
            name, labels, layers = meta.pop("name"), json.loads(meta.pop("labels")), tuple(json.loads(meta.pop("layers")))
        except (KeyError, ValueError) as err:
            raise ValueError(f"{path} is not a head file (metadata: {err})") from None
        missing = [k for k in ("weight", "bias", "platt", "thresholds") if k not in t]
        if missing:
            raise ValueError(f"{path} is not a head file (missing tensors: {', '.join(missing)})")
        weight, bias, platt, thresholds = (t[k].astype(np.float32) for k in ("weight", "bias", "platt", "thresholds"))
        if weight.ndim != 2 or weight.shape[0] != len(labels) or bias.shape != (len(labels),):
            raise ValueError(f"{path}: weights {weight.shape} and bias {bias.shape} do not fit {len(labels)} labels")
        try:
            reads_text = Config.parse(meta["config"]).lexical > 0 if "config" in meta else "lexical_columns" in t
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        return cls(name, labels, layers, weight, bias, platt, thresholds, meta,
                   *(_lexical_parts(path, t, meta, len(labels)) if reads_text else (None, None)))


def _lexical_parts(path: Path, t: dict, meta: dict, labels: int) -> tuple[LexicalFeatures, np.ndarray]:
    """A text-reading head's n-gram columns, idf and weights, all present and consistent."""
    from stimmung.models.lexical import N_FEATURES

    missing = [k for k in ("lexical_columns", "lexical_idf", "lexical_weight") if k not in t]
    if missing or "lexical_scale" not in meta:
        raise ValueError(f"{path}: the head reads n-grams but its file lacks {', '.join(missing) or 'lexical_scale'}")
    columns, idf, weight = t["lexical_columns"], t["lexical_idf"].astype(np.float64), t["lexical_weight"].astype(np.float32)
    try:
        scale = float(meta["lexical_scale"])
    except ValueError:
        scale = float("nan")
    if not (columns.ndim == 1 and np.issubdtype(columns.dtype, np.integer) and len(columns)
            and 0 <= columns.min() and columns.max() < N_FEATURES and np.all(np.diff(columns) > 0)):
        # ascending and distinct: LexicalFeatures.kept finds columns by binary search
        raise ValueError(f"{path}: lexical columns must be ascending hashed columns in [0, {N_FEATURES})")
    if idf.shape != columns.shape or not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"{path}: lexical idf {idf.shape} or scale {meta['lexical_scale']!r} does not fit "
                         f"{len(columns)} columns")
    if weight.shape != (labels, len(columns)):
        raise ValueError(f"{path}: lexical weights do not match {labels} labels x {len(columns)} columns")
    return LexicalFeatures(columns.astype(np.int64), idf, scale), weight


# ---- fitting -------------------------------------------------------------------------------

def fit_logistic(x: np.ndarray, y: np.ndarray, c: float, balanced: bool, sample_weight=None) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    if y.min() == y.max():  # a fold without positives: a constant logit, no crash
        return np.zeros(x.shape[1]), (-8.0 if y.max() == 0 else 8.0)
    lr = LogisticRegression(C=c, class_weight="balanced" if balanced else None, max_iter=3000)
    lr.fit(x, y, sample_weight=sample_weight)
    return lr.coef_[0], float(lr.intercept_[0])


def fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling: minimise the log-loss of sigmoid(a*z + b) (Newton steps, light L2 on a, b)."""
    a, b = 1.0, 0.0
    y = y.astype(np.float64)
    for _ in range(100):
        p = sigmoid(a * z + b)
        g = np.array([((p - y) * z).sum() + 1e-3 * a, (p - y).sum() + 1e-3 * b])
        w = p * (1 - p)
        h = np.array([[(w * z * z).sum() + 1e-3, (w * z).sum()], [(w * z).sum(), w.sum() + 1e-3]])
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    return float(a), float(b)


def fit_temperature(logits: np.ndarray, gold: np.ndarray) -> float:
    """Temperature scaling of multi-class logits (one parameter, minimises the NLL)."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(gold)), gold] - np.log(np.exp(z).sum(1))).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def expected_calibration_error(probs: np.ndarray, gold: np.ndarray, bins: int = 10) -> float:
    """ECE in % (equal-width bins). Binary: ``probs`` [N] of the positive class, ``gold`` 0/1;
    multi-class: ``probs`` [N, K] and ``gold`` class indices (top-label confidence)."""
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.asarray(gold)
    if probs.ndim == 2:
        confidence, correct = probs.max(1), (probs.argmax(1) == gold).astype(float)
    else:
        confidence, correct = probs, gold.astype(float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.sum() * abs(confidence[sel].mean() - correct[sel].mean())
    return round(100 * total / max(1, len(gold)), 2)


def _best_on_grid(score: Callable[[float], float]) -> float:
    """The calibrated-probability threshold, on a 0.025 grid from 0.05 to 0.95, with the best score."""
    best = (-1.0, 0.5)
    for t in np.arange(0.05, 0.951, 0.025):
        f = score(t)
        if f > best[0]:
            best = (f, round(float(t), 3))
    return best[1]


def best_threshold(probs: np.ndarray, gold: np.ndarray, macro: bool = False) -> float:
    """The calibrated-probability threshold with the best F1 (or macro-F1 over both classes)."""
    return _best_on_grid(lambda t: binary_figures(gold, probs >= t)["macro_f1" if macro else "f1"])


def best_shared_threshold(probs: np.ndarray, gold: np.ndarray) -> float:
    """One calibrated-probability threshold for every label of a multi-label head: the best micro-F1."""
    return _best_on_grid(lambda t: micro_f1(gold.astype(bool), probs >= t))


def binary_figures(gold: ArrayLike, pred: ArrayLike) -> dict:
    """Positive-class precision/recall/F1 and macro-F1 over both classes, in %."""
    g, p = np.asarray(gold, bool), np.asarray(pred, bool)
    tp, fp, fn, tn = int((g & p).sum()), int((~g & p).sum()), int((g & ~p).sum()), int((~g & ~p).sum())

    def f1(tp_, fp_, fn_):
        return 200 * tp_ / (2 * tp_ + fp_ + fn_) if tp_ else 0.0

    return {"support": tp + fn, "precision": round(100 * tp / (tp + fp), 2) if tp + fp else 0.0,
            "recall": round(100 * tp / (tp + fn), 2) if tp + fn else 0.0, "f1": round(f1(tp, fp, fn), 2),
            "macro_f1": round((f1(tp, fp, fn) + f1(tn, fn, fp)) / 2, 2), "accuracy": round(100 * (tp + tn) / max(1, len(g)), 2)}


def micro_f1(gold: np.ndarray, pred: np.ndarray) -> float:
    tp, fp, fn = int((gold & pred).sum()), int((~gold & pred).sum()), int((gold & ~pred).sum())
    return round(200 * tp / (2 * tp + fp + fn), 2) if tp else 0.0


@dataclass
class Config:
    layers: tuple[int, ...]
    c: float
    balanced: bool
    lexical: float = 0.0  # scale of the character n-gram features beside the pools (0: pools only)

    def describe(self) -> str:
        described = f"layers={list(self.layers)} C={self.c} class_weight={'balanced' if self.balanced else 'none'}"
        return described + (f" lexical={self.lexical}" if self.lexical else "")

    @classmethod
    def parse(cls, described: str) -> "Config":
        """The inverse of ``describe`` (a head file and a training report record it)."""
        try:
            layers = tuple(json.loads(described.split("layers=")[1].split(" C=")[0]))
            fields = dict(part.split("=", 1) for part in described.split("] ", 1)[1].split())
            return cls(layers, float(fields["C"]), fields["class_weight"] == "balanced", float(fields.get("lexical", 0.0)))
        except (IndexError, KeyError, ValueError) as err:
            raise ValueError(f"not a head configuration: {described!r} ({err})") from None


def design_matrix(pools: np.ndarray, layers: tuple[int, ...], lexical: LexicalFeatures | None = None, counts=None):
    """The features a head reads: the pooled layers, and the text's n-grams when it reads those too."""
    x = normalized(pools, layers)
    if lexical is None:
        return x
    import scipy.sparse as sp

    return sp.hstack([sp.csr_matrix(x), lexical.transform(counts)]).tocsr()


def out_of_fold_logits(pools: np.ndarray, y: np.ndarray, folds: np.ndarray, config: Config,
                       train_mask: np.ndarray | None = None, sample_weight: np.ndarray | None = None,
                       counts=None) -> np.ndarray:
    """``[N, labels]`` logits, each from a model fitted on the other folds (rows outside
    ``train_mask`` are predicted but never trained on, e.g. auxiliary examples' own folds).
    A lexical config needs ``counts`` (``lexical.hashed_counts`` of the rows); its n-gram columns
    and idf are fitted on each fold's training rows only."""
    if config.lexical and counts is None:
        raise ValueError("a lexical head configuration needs the rows' hashed counts")
    y = y.reshape(len(y), -1)
    out = np.zeros(y.shape, dtype=np.float64)
    for fold in np.unique(folds[folds >= 0]):
        fit_rows = folds != fold
        if train_mask is not None:
            fit_rows &= train_mask | (folds < 0)
        lexical = LexicalFeatures.fit(counts[fit_rows], config.lexical) if config.lexical else None
        x_fit = design_matrix(pools[fit_rows], config.layers, lexical, counts[fit_rows] if lexical else None)
        x_out = design_matrix(pools[folds == fold], config.layers, lexical, counts[folds == fold] if lexical else None)
        for j in range(y.shape[1]):
            weights = None if sample_weight is None else sample_weight[fit_rows]
            w, b = fit_logistic(x_fit, y[fit_rows, j], config.c, config.balanced, weights)
            out[folds == fold, j] = x_out @ w + b
    return out


def cross_validated_platt(logits: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Calibrated out-of-fold probabilities: each fold's Platt map fitted on the other folds' logits."""
    probs = np.zeros_like(logits)
    for fold in np.unique(folds):
        rest = folds != fold
        a, b = fit_platt(logits[rest], y[rest])
        probs[folds == fold] = sigmoid(a * logits[folds == fold] + b)
    return probs


def fit_head(name: str, labels: list[str], pools: np.ndarray, y: np.ndarray, config: Config,
             oof_logits: np.ndarray, thresholds: Sequence[float], meta: dict,
             sample_weight: np.ndarray | None = None, counts=None) -> LinearHead:
    """The final head: fitted on all rows; Platt maps from the out-of-fold logits."""
    if config.lexical and counts is None:
        raise ValueError("a lexical head configuration needs the rows' hashed counts")
    lexical = LexicalFeatures.fit(counts, config.lexical) if config.lexical else None
    x = design_matrix(pools, config.layers, lexical, counts)
    y = y.reshape(len(y), -1)
    weights, biases, platt = [], [], []
    for j in range(len(labels)):
        w, b = fit_logistic(x, y[:, j], config.c, config.balanced, sample_weight)
        weights.append(w)
        biases.append(b)
        platt.append(fit_platt(oof_logits[:, j], y[:, j]))
    weight = np.array(weights, dtype=np.float32)
    pooled = pools.shape[-1] * len(config.layers)  # the first columns are the pools', the rest the n-grams'
    return LinearHead(name, labels, config.layers, weight[:, :pooled], np.array(biases, dtype=np.float32),
                      np.array(platt), np.asarray(thresholds, dtype=np.float64), dict(meta, config=config.describe()),
                      lexical, weight[:, pooled:] if lexical is not None else None)


def stratified_folds(strata: Sequence | np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray([str(s) for s in strata])
    folds = np.zeros(len(labels), dtype=int)
    for i, (_, test) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(labels, labels)):
        folds[test] = i
    return folds


def mean_sd(values: Sequence[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": round(float(v.mean()), 2), "sd": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 2)}


# ---- the enricher's set of heads -------------------------------------------------------------

BUILTIN_HEADS = ("complaint", "relevance", "aspects", "intents", "brand_sentiment")
NOT_TOPICS = ("relevance", "brand_sentiment")  # heads whose labels are not taxonomy topics


@dataclass
class HeadPrediction:
    scores: dict[str, float]
    decided: list[str]
    by_head: dict[str, list[str]]

    def decided_of(self, head: str) -> list[str]:
        return self.by_head.get(head, [])


class HeadSet:
    """The builtin heads plus the operator's custom ones (a custom label overrides a builtin one)."""

    def __init__(self, heads: list[LinearHead], version: str):
        self.heads = heads
        self.version = version
        self.topic_labels = {label for h in heads if h.name not in NOT_TOPICS for label in h.labels}

    @classmethod
    def load(cls, builtin_dir: Path, custom_dir: Path | None, model_tag: str) -> "HeadSet":
        import hashlib

        paths = [Path(builtin_dir) / f"{name}.safetensors" for name in BUILTIN_HEADS]
        paths = [p for p in paths if p.is_file()]
        if custom_dir is not None and Path(custom_dir).is_dir():
            paths += sorted(Path(custom_dir).glob("*.safetensors"))
        heads, digest = [], hashlib.sha256()
        for path in paths:
            head = LinearHead.load(path)
            trained_for = head.meta.get("pass")
            if trained_for != model_tag:
                raise ValueError(f"head {path} was trained on another encoder pass ({trained_for}, this one is "
                                 f"{model_tag}); retrain it (stimmung models train-labels, or train_heads)")
            heads.append(head)
            digest.update(path.read_bytes())
        return cls(heads, f"{'+'.join(h.name for h in heads) or 'none'}-{digest.hexdigest()[:12]}")

    def has(self, name: str) -> bool:
        return any(h.name == name for h in self.heads)

    @property
    def reads_text(self) -> bool:
        return any(h.lexical is not None for h in self.heads)

    def predict(self, pools: np.ndarray, languages: Sequence[str | None] | None = None,
                texts: Sequence[str] | None = None) -> list[HeadPrediction]:
        """``texts``: the posts themselves, needed when a head reads their n-grams (``reads_text``)."""
        if self.reads_text and texts is None:
            raise ValueError("these heads read the posts' text: pass texts")
        counts = hashed_counts(texts) if (self.reads_text and texts is not None) else None  # one hashing for every head
        out = [HeadPrediction({}, [], {}) for _ in range(len(pools))]
        for head in self.heads:
            probs = head.probabilities(pools, counts)
            decided = head.decide(probs, languages)
            for row, pred in enumerate(out):
                for j, label in enumerate(head.labels):
                    pred.scores[label] = float(probs[row, j])
                    if label in pred.decided:
                        pred.decided.remove(label)
                    if decided[row, j]:
                        pred.decided.append(label)
                pred.by_head[head.name] = [label for j, label in enumerate(head.labels) if decided[row, j]]
        return out
