"""The offline encoder: one pass of e5-small serves sentiment and topics.

multilingual-e5-small has 12 layers. The sentiment model fine-tunes only the top ``TOP`` layers
(plus a linear head) and keeps the embeddings and the lower layers frozen, so

* training caches the trunk's output once and trains fast on CPU;
* what we commit is small (the top layers in fp16, the head and the topic projection: ~15 MB);
* at inference one pass of 12 layers serves both: the frozen trunk (8 layers), then the
  fine-tuned top (4 layers) for sentiment. Topics need e5's *original* semantic space, which the
  topic prototypes live in; instead of running e5's original top layers as a second branch
  (4 more layers: a third of the cost), a linear **topic projection**, fitted by ridge regression
  on UMSAB train, maps the mean-pooled trunk and fine-tuned outputs back onto e5's original
  embedding (mean cosine 0.986 on UMSAB val). A sentiment file without a projection (older
  files) falls back to the second branch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

TOP = 4  # fine-tuned layers
MAX_TOKENS = 64  # social posts: 64 subword tokens cover ~97% of UMSAB tweets
PREFIX = "query: "  # e5's prefix for symmetric tasks (classification, clustering)
PROJECTION = "topic_projection."  # key prefix of the projection in the sentiment file


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def normalized_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(mean_pool(hidden, mask), dim=-1)


def extended_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, T] 1/0 -> the additive [B, 1, 1, T] mask BertLayer expects."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def run_layers(layers: nn.ModuleList, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    ext = extended_mask(mask, hidden.dtype)
    for layer in layers:
        hidden = layer(hidden, attention_mask=ext)
    return hidden


class SentimentHead(nn.Module):
    """Fine-tuned top layers + mean pooling + linear classifier (3 classes)."""

    def __init__(self, top_layers: nn.ModuleList, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.layers = top_layers
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, 3)

    def hidden_states(self, trunk: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return run_layers(self.layers, trunk, mask)

    def logits(self, top: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(mean_pool(top, mask)))

    def forward(self, trunk: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.logits(self.hidden_states(trunk, mask), mask)


@dataclass
class Encoded:
    sentiment_probs: torch.Tensor | None  # [B, 3]
    embeddings: torch.Tensor | None  # [B, H], L2-normalised (topic space)


def projection_features(trunk: torch.Tensor, top: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The topic projection's input: normalised mean pools of the trunk and the fine-tuned top."""
    return torch.cat([normalized_pool(trunk, mask), normalized_pool(top, mask)], dim=-1)


class SharedEncoder(nn.Module):
    def __init__(self, base, top: int = TOP):
        super().__init__()
        self.embeddings = base.embeddings
        layers = base.encoder.layer
        self.split = len(layers) - top
        self.trunk = nn.ModuleList(layers[: self.split])
        self.original_top = nn.ModuleList(layers[self.split:])
        self.hidden = base.config.hidden_size
        self.sentiment: SentimentHead | None = None
        self.topic_projection: nn.Linear | None = None

    def new_sentiment_head(self) -> SentimentHead:
        self.sentiment = SentimentHead(copy.deepcopy(self.original_top), self.hidden)
        return self.sentiment

    def new_topic_projection(self) -> nn.Linear:
        self.topic_projection = nn.Linear(2 * self.hidden, self.hidden)
        return self.topic_projection

    @property
    def sentiment_head(self) -> SentimentHead:
        """The fine-tuned sentiment layers, for callers that cannot work without them."""
        if self.sentiment is None:
            raise RuntimeError("the builtin sentiment layers are not loaded (models.sentiment is off or a Hugging Face model)")
        return self.sentiment

    @property
    def projection(self) -> nn.Linear:
        """The fitted topic projection, for callers that cannot work without it."""
        if self.topic_projection is None:
            raise RuntimeError("the topic projection is not loaded (it lives in the builtin sentiment file)")
        return self.topic_projection

    @property
    def single_pass(self) -> bool:
        """Sentiment and topics from one 12-layer pass (needs the fitted projection)."""
        return self.sentiment is not None and self.topic_projection is not None

    def run_trunk(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        return run_layers(self.trunk, h, mask)

    def run_original_top(self, trunk: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """e5's own embedding (the topic space), via e5's original top layers."""
        return normalized_pool(run_layers(self.original_top, trunk, mask), mask)

    def forward(self, input_ids, mask, want_sentiment: bool = True, want_embeddings: bool = True) -> Encoded:
        trunk = self.run_trunk(input_ids, mask)
        probs = emb = None
        if self.sentiment is not None and (want_sentiment or (want_embeddings and self.single_pass)):
            top = self.sentiment.hidden_states(trunk, mask)
            if want_sentiment:
                probs = torch.softmax(self.sentiment.logits(top, mask), dim=-1)
            if want_embeddings and self.single_pass:
                emb = torch.nn.functional.normalize(self.projection(projection_features(trunk, top, mask)), dim=-1)
        if want_embeddings and emb is None:
            emb = self.run_original_top(trunk, mask)
        return Encoded(probs, emb)


def load_base(base_dir: Path):
    from transformers import AutoTokenizer, BertModel

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = BertModel.from_pretrained(base_dir, add_pooling_layer=False, attn_implementation="eager")
    base.eval()
    return tokenizer, base


def tokenize(tokenizer, texts: Sequence[str], max_tokens: int = MAX_TOKENS):
    enc = tokenizer([PREFIX + t for t in texts], padding=True, truncation=True, max_length=max_tokens,
                    return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def token_buckets(tokenizer, texts: Sequence[str], bucket: int, max_tokens: int = MAX_TOKENS):
    """Yield ``(indices, input_ids, mask)`` for buckets of up to ``bucket`` texts of similar token length.

    A micro-batch from the stream mixes one-line posts with long ones; padding them all to the
    longest wastes most of the encoder's work (benchmarks/enrich.py: 67.8 -> 112.1 posts/s fp32
    with buckets of 16 instead of one padded batch of 64). So the whole micro-batch is tokenised
    once, sorted by real token count, and cut into small buckets padded separately.
    """
    ids = tokenizer([PREFIX + t for t in texts], truncation=True, max_length=max_tokens)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), bucket):
        idx = order[start:start + bucket]
        padded = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
        yield idx, padded["input_ids"], padded["attention_mask"]


def save_sentiment(head: SentimentHead, path: Path, meta: dict[str, str],
                   projection: nn.Linear | None = None) -> None:
    from safetensors.torch import save_file

    state = dict(head.state_dict())
    if projection is not None:
        state.update({PROJECTION + k: v for k, v in projection.state_dict().items()})
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}
    save_file(state, str(path), metadata={k: str(v) for k, v in meta.items()})


def sentiment_top_layers(path: Path) -> int:
    """How many top layers a sentiment file fine-tuned (its ``top_layers`` metadata; files from
    before the option have 4): the encoder must be split there before the file is loaded."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        value = (fh.metadata() or {}).get("top_layers", str(TOP))
    try:
        top = int(value)
    except ValueError:
        raise ValueError(f"{path}: top_layers {value!r} is not a number of layers") from None
    if not 1 <= top <= 12:
        raise ValueError(f"{path}: top_layers {top} is outside 1..12 (e5-small has 12 layers)")
    return top


def load_sentiment(encoder: SharedEncoder, path: Path) -> dict[str, str]:
    """Put the fine-tuned head (and the topic projection, when the file has one) on the encoder."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    state = {k: v.to(torch.float32) for k, v in load_file(str(path)).items()}
    projection = {k[len(PROJECTION):]: state.pop(k) for k in list(state) if k.startswith(PROJECTION)}
    head = encoder.new_sentiment_head()
    head.load_state_dict(state)
    head.eval()
    if projection:
        encoder.new_topic_projection().load_state_dict(projection)
    with safe_open(str(path), "pt") as fh:
        return dict(fh.metadata() or {})
