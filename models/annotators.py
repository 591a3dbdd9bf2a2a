"""Sentiment and topic annotators behind the pipeline's ``Annotator`` interface.

``E5Annotator`` (offline default): one shared trunk pass per micro-batch feeds both the
fine-tuned sentiment head and the topic embeddings. Inference runs under
``torch.inference_mode``, in length buckets (little padding), optionally with int8 dynamic
quantisation of the linear layers, and encodes each distinct text once per batch (reposts).

``HFSentimentAnnotator`` (production option): any Hugging Face sequence-classification model
by id or path (e.g. ``cardiffnlp/twitter-xlm-roberta-base-sentiment``), labels mapped by name.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stimmung.models.base import Annotations, MentionText
from stimmung.models.encoder import TOP, SharedEncoder, load_base, load_sentiment, sentiment_top_layers, token_buckets
from stimmung.models.features import LONG_TOKENS, TOP_LAYER, WINDOW, encode_pools, topic_embeddings
from stimmung.models.heads import HeadSet
from stimmung.models.topics import TopicClassifier, load_taxonomy
from stimmung.schemas.mention import ComplaintResult, SentimentResult, TopicScore

log = logging.getLogger(__name__)

LABELS = ("negative", "neutral", "positive")
DEFAULT_SENTIMENT_FILE = Path(__file__).resolve().parent / "sentiment" / "sentiment-head.safetensors"
DEFAULT_HEADS_DIR = Path(__file__).resolve().parent / "heads"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def sentiment_result(probs: Sequence[float]) -> SentimentResult:
    p = [round(float(x), 4) for x in probs]
    best = int(np.argmax(p))
    return SentimentResult(label=LABELS[best], score=p[best], probabilities=dict(zip(LABELS, p)))


QUANTIZATION = ("none", "ffn", "all")


def quantized(encoder: SharedEncoder, mode: str) -> SharedEncoder:
    """int8 dynamic quantisation (weights int8, activations quantised per batch).

    ``ffn`` quantises the feed-forward blocks of every layer (two thirds of the encoder's
    multiply-adds) and keeps attention, the classifier and the topic projection in fp32: about
    2x the fp32 speed with sentiment within ~2.5 points of fp32 on every UMSAB language.
    ``all`` quantises every linear layer: ~3.5x, but German drops 6 points (below our target);
    measured in models/README.md. Off by default: dynamic quantisation scales activations per
    batch, so a post's scores then depend slightly on the posts it is batched with (a replayed
    mention may come out a little different); fp32 gives the same result in any batch.
    """
    if mode not in QUANTIZATION:
        raise ValueError(f"models.quantization must be one of {', '.join(QUANTIZATION)}, not {mode!r}")
    if mode == "none":
        return encoder
    with warnings.catch_warnings():
        # torch.ao's eager-mode quantisation announces its move to torchao; it works in our pinned torch.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        if mode == "all":
            return torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8)
        layers = [*encoder.trunk, *encoder.original_top, *(encoder.sentiment.layers if encoder.sentiment else [])]
        for layer in layers:
            layer.intermediate = torch.ao.quantization.quantize_dynamic(layer.intermediate, {torch.nn.Linear}, dtype=torch.qint8)
            layer.output = torch.ao.quantization.quantize_dynamic(layer.output, {torch.nn.Linear}, dtype=torch.qint8)
    return encoder


class E5Annotator:
    name = "e5"

    def __init__(self, base_dir: Path | None = None, sentiment_file: Path | None = None,
                 taxonomy_file: Path | None = None, batch_size: int = 16, threads: int | None = None,
                 quantization: str = "none", sentiment: bool = True, topics: bool = True, heads: bool = True,
                 heads_dir: Path | None = None, custom_heads_dir: Path | None = None, long_tokens: int = LONG_TOKENS,
                 shared_pass: bool = False, window: int = WINDOW):
        from stimmung.models.e5_base import build_base_encoder

        if threads:
            torch.set_num_threads(threads)
        base_dir = Path(base_dir) if base_dir else build_base_encoder()
        self.tokenizer, base = load_base(base_dir)
        path = Path(sentiment_file) if sentiment_file else DEFAULT_SENTIMENT_FILE
        loads_sentiment = (sentiment or heads or shared_pass) and path.is_file()
        self.encoder = SharedEncoder(base, sentiment_top_layers(path) if loads_sentiment else TOP)
        self.want_sentiment = sentiment
        self.want_topics = topics
        self.batch_size = batch_size
        self.long_tokens = long_tokens
        self.window = window  # tokens per window; the benchmark's "before #17" run sets 64
        self.temperature = 1.0
        self.versions: dict[str, str] = {}
        # The trained heads read the fine-tuned top layers' pools, so they need the sentiment file too
        # (``shared_pass``: load it for pools alone, e.g. to train a head).
        self.model_tag = f"{base_dir.name}-none"
        self.sentiment_meta: dict[str, str] = {}
        if sentiment or heads or shared_pass:
            if not path.is_file():
                raise FileNotFoundError(f"sentiment model {path} is missing (train it: python -m stimmung.models.train_sentiment)")
            meta = self.sentiment_meta = load_sentiment(self.encoder, path)
            self.model_tag = f"{base_dir.name}-{_file_digest(path)}"
            if sentiment:
                self.versions["sentiment"] = f"{meta.get('model', 'e5-sentiment')}-{_file_digest(path)}"
                self.temperature = sentiment_temperature(Path(heads_dir) if heads_dir else DEFAULT_HEADS_DIR, self.model_tag)
        self.encoder.eval()
        self.encoder = quantized(self.encoder, quantization)
        self.heads: HeadSet | None = None
        if heads:
            self.heads = HeadSet.load(Path(heads_dir) if heads_dir else DEFAULT_HEADS_DIR, custom_heads_dir, self.model_tag)
            self.versions["heads"] = self.heads.version
        self.topics: TopicClassifier | None = None
        if topics:
            taxonomy = load_taxonomy(taxonomy_file)
            self.topics = TopicClassifier.build(taxonomy, self.embed)
            self.versions["topics"] = f"taxonomy-{taxonomy.digest}"
        self.version = ",".join(f"{k}={v}" for k, v in self.versions.items())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        embeddings = self.encode(list(texts), want_sentiment=False)[1]
        if embeddings is None:  # encode_all always embeds when sentiment is not wanted
            raise RuntimeError("the encoder returned no embeddings")
        return embeddings

    def pools(self, texts: Sequence[str]) -> np.ndarray:
        """The shared pass (features.py): per-layer mean pools, long posts in windows."""
        return encode_pools(self.encoder, self.tokenizer, texts, bucket=self.batch_size, window=self.window,
                            long_tokens=max(self.long_tokens, self.window))

    def sentiment_probs(self, pools: np.ndarray) -> np.ndarray:
        """Temperature-scaled (calibrated) sentiment probabilities from the pools."""
        with torch.inference_mode():
            logits = self.encoder.sentiment_head.classifier(torch.from_numpy(pools[:, TOP_LAYER]).float())
            return torch.softmax(logits / self.temperature, dim=-1).numpy()

    def encode(self, texts: list[str], want_sentiment: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
        probs, embs, _ = self.encode_all(texts, want_sentiment)
        return probs, embs

    def encode_all(self, texts: list[str], want_sentiment: bool = True):
        """(sentiment probabilities, topic embeddings, pools) from one pass; pools None without the
        fine-tuned layers (then topics come from e5's own top layers, the two-branch fallback)."""
        want_embs = self.want_topics or not want_sentiment
        if self.encoder.single_pass:
            pools = self.pools(texts)
            probs = self.sentiment_probs(pools) if want_sentiment else None
            return probs, (topic_embeddings(self.encoder, pools) if want_embs else None), pools
        probs = np.zeros((len(texts), 3), dtype=np.float32) if want_sentiment else None
        embs = np.zeros((len(texts), self.encoder.hidden), dtype=np.float32) if want_embs else None
        with torch.inference_mode():
            for idx, ids, mask in token_buckets(self.tokenizer, texts, self.batch_size):
                out = self.encoder(ids, mask, want_sentiment=want_sentiment, want_embeddings=embs is not None)
                if probs is not None and out.sentiment_probs is not None:
                    probs[idx] = out.sentiment_probs.numpy()
                if embs is not None and out.embeddings is not None:
                    embs[idx] = out.embeddings.numpy()
        return probs, embs, None

    def annotate(self, items: Sequence[MentionText], out: Sequence[Annotations]) -> None:
        unique: dict[str, int] = {}
        for item in items:
            unique.setdefault(item.text, len(unique))
        texts = list(unique)
        probs, embs, pools = self.encode_all(texts, want_sentiment=self.want_sentiment)
        topic_rows = self.topics.labels_for(embs) if (self.topics is not None and embs is not None) else None
        head_set = self.heads
        # the language of each distinct text (the language annotator runs first in the chain)
        languages: list[str | None] = [None] * len(texts)
        for item, ann in zip(items, out, strict=True):
            languages[unique[item.text]] = languages[unique[item.text]] or (ann.language if ann.language != "und" else None)
        heads = head_set.predict(pools, languages, texts) if (head_set is not None and pools is not None) else None
        for item, ann in zip(items, out, strict=True):
            row = unique[item.text]
            if probs is not None:
                ann.sentiment = sentiment_result(probs[row])
            topics = topic_rows[row] if topic_rows is not None else []
            if heads is not None and head_set is not None:
                h = heads[row]
                if "complaint" in h.scores:
                    p = h.scores["complaint"]
                    ann.complaint = ComplaintResult(label="complaint" if "complaint" in h.decided else "no_complaint",
                                                    probability=round(p, 4))
                if "relevant" in h.scores:
                    ann.relevance = round(h.scores["relevant"], 4)
                if head_set.has("brand_sentiment"):
                    ann.brand_sentiment = sentiment_result([h.scores[label] for label in LABELS])
                ann.aspects = [TopicScore(label=label, score=round(h.scores[label], 4)) for label in h.decided_of("aspects")]
                ann.intents = [TopicScore(label=label, score=round(h.scores[label], 4)) for label in h.decided_of("intents")]
                # A label with a trained head is decided by the head, not by prototype similarity.
                topics = [t for t in topics if t[0] not in head_set.topic_labels]
                topics += [(label, round(h.scores[label], 4)) for label in h.decided if label in head_set.topic_labels]
                topics.sort(key=lambda t: -t[1])
            if topic_rows is not None or heads is not None:
                ann.topics = [TopicScore(label=label, score=score) for label, score in topics]


def sentiment_temperature(heads_dir: Path, model_tag: str) -> float:
    """The sentiment temperature fitted by train_heads.py, if it was fitted for this sentiment file."""
    import json

    path = heads_dir / "sentiment-calibration.json"
    if not path.is_file():
        return 1.0
    data = json.loads(path.read_text(encoding="utf-8"))
    return float(data["temperature"]) if data.get("pass") == model_tag else 1.0


class HFSentimentAnnotator:
    """Any Hugging Face sequence-classification sentiment model (by id or local path)."""

    name = "sentiment"

    def __init__(self, model: str, batch_size: int = 32, max_tokens: int = 128):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForSequenceClassification.from_pretrained(model).eval()
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.version = f"hf:{model}"
        id2label = {int(k): str(v).lower() for k, v in self.model.config.id2label.items()}
        self.index = self.label_index(id2label)

    @staticmethod
    def label_index(id2label: dict[int, str]) -> list[int]:
        """Model output index for negative, neutral, positive (names, else LABEL_0..2 order)."""
        by_name = {}
        for i, name in id2label.items():
            for wanted in LABELS:
                if name.startswith(wanted[:3]):
                    by_name[wanted] = i
        if len(by_name) == 3:
            return [by_name[w] for w in LABELS]
        if len(id2label) == 3:
            return [0, 1, 2]
        raise ValueError(f"cannot map model labels {id2label} to negative/neutral/positive")

    def annotate(self, items: Sequence[MentionText], out: Sequence[Annotations]) -> None:
        texts = [i.text for i in items]
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                     max_length=self.max_tokens, return_tensors="pt")
                probs = torch.softmax(self.model(**enc).logits, dim=-1)[:, self.index].numpy()
                for ann, p in zip(out[start:start + self.batch_size], probs):
                    ann.sentiment = sentiment_result(p)
