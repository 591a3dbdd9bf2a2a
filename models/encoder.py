"""The offline encoder with a shared trunk and two heads.

multilingual-e5-small has 12 layers. The sentiment model fine-tunes only the top ``TOP`` layers
(plus a linear head) and keeps the embeddings and the lower layers frozen, so

* training caches the trunk's output once and trains fast on CPU;
* what we commit is small (the top layers in fp16 and the head: ~14 MB);
* at inference one trunk pass serves both heads: the fine-tuned top layers for sentiment, the
  original top layers for the topic embeddings (e5's semantic space, which the topic
  prototypes live in).
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


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def extended_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, T] 1/0 -> the additive [B, 1, 1, T] mask BertLayer expects."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class SentimentHead(nn.Module):
    """Fine-tuned top layers + mean pooling + linear classifier (3 classes)."""

    def __init__(self, top_layers: nn.ModuleList, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.layers = top_layers
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, 3)

    def forward(self, trunk: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = trunk
        ext = extended_mask(mask, h.dtype)
        for layer in self.layers:
            h = layer(h, attention_mask=ext)
        return self.classifier(self.dropout(mean_pool(h, mask)))


@dataclass
class Encoded:
    sentiment_probs: torch.Tensor | None  # [B, 3]
    embeddings: torch.Tensor | None  # [B, H], L2-normalised (topic space)


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

    def new_sentiment_head(self) -> SentimentHead:
        self.sentiment = SentimentHead(copy.deepcopy(self.original_top), self.hidden)
        return self.sentiment

    def run_trunk(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        ext = extended_mask(mask, h.dtype)
        for layer in self.trunk:
            h = layer(h, attention_mask=ext)
        return h

    def run_original_top(self, trunk: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = trunk
        ext = extended_mask(mask, h.dtype)
        for layer in self.original_top:
            h = layer(h, attention_mask=ext)
        return torch.nn.functional.normalize(mean_pool(h, mask), dim=-1)

    def forward(self, input_ids, mask, want_sentiment: bool = True, want_embeddings: bool = True) -> Encoded:
        trunk = self.run_trunk(input_ids, mask)
        probs = emb = None
        if want_sentiment and self.sentiment is not None:
            probs = torch.softmax(self.sentiment(trunk, mask), dim=-1)
        if want_embeddings:
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


def save_sentiment(head: SentimentHead, path: Path, meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(path), metadata={k: str(v) for k, v in meta.items()})


def load_sentiment(encoder: SharedEncoder, path: Path) -> dict[str, str]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    head = encoder.new_sentiment_head()
    state = {k: v.to(torch.float32) for k, v in load_file(str(path)).items()}
    head.load_state_dict(state)
    head.eval()
    with safe_open(str(path), "pt") as fh:
        return dict(fh.metadata() or {})
