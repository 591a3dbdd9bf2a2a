"""Cache of shared-pass pools (features.py) on disk, keyed by everything that changes them.

    python -m stimmung.models.feature_cache --cache /tmp/stimmung-models-cache [--long]

encodes the training and evaluation sets once (UMSAB train+val, complaints/train.csv, GermEval
2017 dev, models/eval/crm_posts_v1.jsonl); training heads and evaluating them then read the
``.npy`` files. The key is a SHA-256 of the texts, the window settings, the base encoder's
directory name (itself a content hash) and the sentiment file's digest.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from stimmung.models.features import LONG_TOKENS, WINDOW, encode_pools

log = logging.getLogger("feature_cache")
DEFAULT_CACHE = Path(os.environ.get("STIMMUNG_FEATURE_CACHE", "/tmp/stimmung-models-cache"))


def cache_key(texts: Sequence[str], window: int, long_tokens: int, model_tag: str) -> str:
    h = hashlib.sha256(f"{window}|{long_tokens}|{model_tag}".encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()[:20]


class PoolCache:
    """Pools for lists of texts through one loaded annotator (its encoder and tokenizer)."""

    def __init__(self, annotator, directory: Path = DEFAULT_CACHE):
        self.annotator = annotator
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.model_tag = annotator.model_tag

    def pools(self, name: str, texts: Sequence[str], window: int = WINDOW, long_tokens: int = WINDOW) -> np.ndarray:
        path = self.directory / f"{name}-{cache_key(texts, window, long_tokens, self.model_tag)}.npy"
        if path.is_file():
            return np.load(path)
        started, done = time.monotonic(), [0]

        def progress(n: int) -> None:
            done[0] += n
            if done[0] // 500 != (done[0] - n) // 500:
                log.info("%s: %d windows encoded (%.0fs)", name, done[0], time.monotonic() - started)

        pools = encode_pools(self.annotator.encoder, self.annotator.tokenizer, texts, window=window,
                             long_tokens=long_tokens, progress=progress)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, pools.astype(np.float16))
        tmp.replace(path)
        log.info("%s: %d texts cached in %.0fs -> %s", name, len(texts), time.monotonic() - started, path)
        return pools.astype(np.float16)


def main(argv: list[str] | None = None) -> int:
    import torch

    from stimmung.models.annotators import E5Annotator
    from stimmung.models.datasets import read_complaints, read_germeval, read_topic_jsonl, read_umsab

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--long", action="store_true", help="also GermEval at up to 512 tokens in windows")
    p.add_argument("--skip-umsab", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    torch.set_num_threads(1)
    cache = PoolCache(E5Annotator(topics=False, heads=False), args.cache)
    germeval = [d.text for d in read_germeval(args.data / "germeval2017" / "dev.tsv")]
    cache.pools("complaints-train", [r.text for r in read_complaints(args.data / "complaints" / "train.csv")])
    cache.pools("germeval-dev", germeval)
    crm = Path(__file__).resolve().parent / "eval" / "crm_posts_v1.jsonl"
    cache.pools("crm-posts-v1", [e.text for e in read_topic_jsonl(crm)])
    if args.long:
        cache.pools("germeval-dev", germeval, long_tokens=LONG_TOKENS)
    if not args.skip_umsab:
        for split in ("train", "val"):
            cache.pools(f"umsab-{split}", read_umsab(args.data / "umsab", split).texts)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
