"""The shared pass as features: per-layer mean pools of one e5 pass, with head+tail and windows.

Everything the enricher derives from the encoder is a *linear* function of mean-pooled hidden
states of one pass (trunk layers frozen, top layers the fine-tuned sentiment layers: 1-8 and 9-12
by default, ``train_sentiment --top-layers`` moves the split); some trained heads also read the
post's character n-grams (lexical.py):

* sentiment logits = the classifier applied to the mean pool of the last fine-tuned layer;
* the topic embedding = the topic projection of the normalised pools of the trunk's last layer
  (8 by default) and layer 12;
* the trained heads (complaint, relevance, aspects, intents, custom labels; see heads.py) are
  logistic regressions on normalised pools of a few layers (and, for some, the n-grams).

So the pools (``[texts, 13, 384]``: the embedding output and the 12 layers) are the pass's
cacheable point: training heads and evaluating them never re-runs the encoder, and long posts
can be pooled over several windows (the pool of a long post = the token-weighted mean of its
windows' pools, so every head's logit is pooled along with it).

Token budget: a post of up to ``window`` tokens is one window (short posts cost what they did);
a longer one keeps its head and tail (half the budget each) when ``long_tokens <= window``, else
up to ``long_tokens`` tokens (head+tail beyond that) are cut into equal windows of at most
``window`` tokens, each with e5's ``query: `` prefix and its own [CLS]/[SEP].
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from stimmung.models.encoder import PREFIX, SharedEncoder, extended_mask, mean_pool

# Tokens per window (incl. prefix and special tokens). 64, as the sentiment layers were trained:
# a 128-token head+tail cost 20-25 % of throughput (benchmarks/enrich.py, issue #17) for posts
# between 64 and 128 tokens, and longer posts are read in windows of 64 up to LONG_TOKENS anyway.
WINDOW = 64
LONG_TOKENS = 512  # long posts: up to this many content tokens, in windows
LAYERS = 13  # embedding output + 12 layers
TOP_LAYER = 12


def _head_tail(content: list[int], budget: int) -> list[int]:
    if len(content) <= budget:
        return content
    head = budget // 2
    return content[:head] + content[len(content) - (budget - head):]


def windows_for(tokenizer, texts: Sequence[str], window: int = WINDOW, long_tokens: int = WINDOW) -> list[list[list[int]]]:
    """Per text, its windows as token id lists (``[CLS] query: ... [SEP]``)."""
    prefix = tokenizer(PREFIX.strip(), add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    bodies = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    budget = window - 2 - len(prefix)
    out = []
    for content in bodies:
        if len(content) <= budget or long_tokens <= window:
            out.append([[cls, *prefix, *_head_tail(content, budget), sep]])
            continue
        content = _head_tail(content, max(budget, long_tokens - 2 - len(prefix)))
        n = -(-len(content) // budget)
        size = -(-len(content) // n)
        out.append([[cls, *prefix, *content[s:s + size], sep] for s in range(0, len(content), size)])
    return out


def layer_pools(encoder: SharedEncoder, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, 13, H]`` mean pools of the embedding output and every layer (top = fine-tuned layers)."""
    if encoder.sentiment is None:
        raise ValueError("the shared pass needs the fine-tuned top layers (the builtin sentiment file)")
    hidden = encoder.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
    ext = extended_mask(mask, hidden.dtype)
    pools = [mean_pool(hidden, mask)]
    for layer in [*encoder.trunk, *encoder.sentiment.layers]:
        hidden = layer(hidden, attention_mask=ext)
        pools.append(mean_pool(hidden, mask))
    return torch.stack(pools, dim=1)


def encode_pools(encoder: SharedEncoder, tokenizer, texts: Sequence[str], bucket: int = 16, window: int = WINDOW,
                 long_tokens: int = WINDOW, progress=None) -> np.ndarray:
    """``[N, 13, H]`` float32 pools; windows of similar length are encoded together (little padding)."""
    per_text = windows_for(tokenizer, texts, window, long_tokens)
    flat = [(i, w) for i, ws in enumerate(per_text) for w in ws]
    order = sorted(range(len(flat)), key=lambda k: len(flat[k][1]))
    pools = np.zeros((len(texts), LAYERS, encoder.hidden), dtype=np.float64)
    weight = np.zeros(len(texts), dtype=np.float64)
    pad = tokenizer.pad_token_id
    with torch.inference_mode():
        for start in range(0, len(order), bucket):
            chunk = [flat[k] for k in order[start:start + bucket]]
            longest = max(len(w) for _, w in chunk)
            ids = torch.full((len(chunk), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), longest), dtype=torch.long)
            for row, (_, w) in enumerate(chunk):
                ids[row, :len(w)] = torch.tensor(w)
                mask[row, :len(w)] = 1
            out = layer_pools(encoder, ids, mask).numpy()
            for row, (i, w) in enumerate(chunk):
                pools[i] += len(w) * out[row]
                weight[i] += len(w)
            if progress is not None:
                progress(len(chunk))
    return (pools / weight[:, None, None]).astype(np.float32)


def normalized(pools: np.ndarray, layers: Sequence[int]) -> np.ndarray:
    """Concatenated L2-normalised pools of ``layers`` (a head's input)."""
    parts = [pools[:, layer] / np.maximum(np.linalg.norm(pools[:, layer], axis=1, keepdims=True), 1e-9)
             for layer in layers]
    return np.concatenate(parts, axis=1).astype(np.float32)


def sentiment_probs(encoder: SharedEncoder, pools: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        logits = encoder.sentiment_head.classifier(torch.from_numpy(pools[:, TOP_LAYER]).float())
        return torch.softmax(logits, dim=-1).numpy()


def topic_embeddings(encoder: SharedEncoder, pools: np.ndarray) -> np.ndarray:
    """e5's topic space via the projection (see encoder.py), from the same pools."""
    with torch.inference_mode():
        x = torch.from_numpy(normalized(pools, (encoder.split, TOP_LAYER)))
        return torch.nn.functional.normalize(encoder.projection(x), dim=-1).numpy()
