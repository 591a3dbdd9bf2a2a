"""Enrichment throughput: our micro-batched enricher vs a naive one-post-at-a-time baseline.

    ./run stimmung ... (inside the environment):  python benchmarks/enrich.py [--posts 2000]

Workload: a realistic mix of German and English social posts (UMSAB German/English val tweets
and GermEval 2017 customer feedback, from ../shared/data), 15% exact reposts as in real streams.
Ours: language + sentiment + topics (the pipeline's default chain: one 12-layer encoder pass),
micro-batches of ``--batch`` encoded in token-length buckets of ``--bucket``; prints mentions/s
and p50/p99 batch latency, for fp32 and int8, and fp32 without buckets (one padded batch per
micro-batch) to show what the buckets are worth.
Baseline, same run: each post alone through ``transformers.pipeline("feature-extraction")`` on
the same base encoder (the encoder only, no heads: a lower bound on a naive enricher's cost),
with our token cap (``MAX_TOKENS``, 64: it used to encode up to 512) and the same warm-up.
Also the default before issue #17 (64 tokens, no trained heads), for that issue's throughput
target (today's default at >= 0.9x it); ``--pairs N`` adds N back-to-back pairs of the two in
alternating order, with the mean and sd of their ratios. Ours skips exact reposts within a micro-batch (one encoder pass per distinct text), which the
baseline does not: ours is also run on an equally long workload without reposts, so the gain
from skipping is reported apart from the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import torch

from stimmung.models import Enricher, MentionText
from stimmung.models.annotators import E5Annotator
from stimmung.models.datasets import read_germeval, read_umsab
from stimmung.models.e5_base import build_base_encoder
from stimmung.models.encoder import MAX_TOKENS
from stimmung.models.language import LanguageAnnotator

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def workload(n: int, seed: int = 7, reposts: float = 0.15) -> list[str]:
    rng = random.Random(seed)
    umsab = [t for split in ("train", "val") for t in read_umsab(SHARED / "umsab", split, ["german", "english"]).texts]
    germeval = [d.text for d in read_germeval(SHARED / "germeval2017" / "dev.tsv") if len(d.text) < 600]
    pool = list(dict.fromkeys(umsab + rng.sample(germeval, min(len(germeval), len(umsab) // 4))))
    posts = rng.sample(pool, min(len(pool), int(n * (1 - reposts))))  # distinct posts
    posts += [rng.choice(posts) for _ in range(n - len(posts))]  # exact reposts
    rng.shuffle(posts)
    return posts


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_ours(posts: list[str], batch: int, bucket: int, quantization: str, **annotator) -> dict:
    enricher = Enricher([LanguageAnnotator(), E5Annotator(quantization=quantization, batch_size=bucket, **annotator)])
    items = [MentionText(p) for p in posts]
    enricher.enrich(items[:batch])  # warm-up
    latencies = []
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        t = time.perf_counter()
        out = enricher.enrich(chunk)
        latencies.append(time.perf_counter() - t)
        assert all(a.sentiment is not None for a in out)
    seconds = time.perf_counter() - started
    return {"mentions_per_s": round(len(items) / seconds, 1), "batch_p50_ms": round(1000 * percentile(latencies, 0.5), 1),
            "batch_p99_ms": round(1000 * percentile(latencies, 0.99), 1), "batches": len(latencies)}


def run_baseline(posts: list[str], warmup: int) -> dict:
    from transformers import pipeline

    extractor = pipeline("feature-extraction", model=str(build_base_encoder()), framework="pt")
    for p in posts[:warmup]:  # as ours gets one micro-batch of warm-up
        extractor("query: " + p, truncation=True, max_length=MAX_TOKENS)
    latencies = []
    started = time.perf_counter()
    for p in posts:
        t = time.perf_counter()
        extractor("query: " + p, truncation=True, max_length=MAX_TOKENS)
        latencies.append(time.perf_counter() - t)
    seconds = time.perf_counter() - started
    return {"mentions_per_s": round(len(posts) / seconds, 1), "p50_ms": round(1000 * percentile(latencies, 0.5), 1),
            "p99_ms": round(1000 * percentile(latencies, 0.99), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--posts", type=int, default=2000)
    p.add_argument("--baseline-posts", type=int, default=300)
    p.add_argument("--batch", type=int, default=64, help="micro-batch (the pipeline's enrich_batch_size)")
    p.add_argument("--bucket", type=int, default=16, help="encoder bucket (models.batch_size)")
    p.add_argument("--pairs", type=int, default=0,
                   help="then N back-to-back pairs of today's default and the default before issue #17, in "
                        "alternating order; prints each pair's ratio and their mean and sd (a shared machine's load "
                        "drifts over the minutes between the single rows above)")
    args = p.parse_args()
    posts = workload(args.posts)
    machine = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
               "python": platform.python_version(), "torch": torch.__version__}
    print(f"machine: {json.dumps(machine)}")
    print(f"workload: {len(posts)} posts (German/English mix, {len(set(posts))} distinct)")
    baseline = run_baseline(posts[: args.baseline_posts], warmup=args.batch)
    print(f"baseline (one post at a time, transformers.pipeline, encoder only, up to {MAX_TOKENS} tokens, "
          f"warmed up): {json.dumps(baseline)}")
    results = {}
    runs = {"ours fp32, no buckets": (args.batch, "none"), "ours fp32 (default)": (args.bucket, "none"),
            "ours int8 ffn": (args.bucket, "ffn"), "ours int8 all": (args.bucket, "all")}
    for name, (bucket, quantization) in runs.items():
        results[name] = run_ours(posts, args.batch, bucket, quantization)
        speedup = results[name]["mentions_per_s"] / baseline["mentions_per_s"]
        print(f"{name} (language + sentiment + topics, micro-batch {args.batch}, bucket {bucket}): "
              f"{json.dumps(results[name])}  = {speedup:.1f}x baseline", flush=True)
    # Issue #17's throughput target: today's default (trained heads, head+tail 128 tokens, windows up
    # to 512 for long posts) at >= 0.9x the default before it (64 tokens, no heads), same run.
    before = run_ours(posts, args.batch, args.bucket, "none", heads=False, window=64, long_tokens=64)
    ratio = results["ours fp32 (default)"]["mentions_per_s"] / before["mentions_per_s"]
    print(f"ours fp32, the default before issue #17 (64 tokens, no trained heads): {json.dumps(before)}  "
          f"= {before['mentions_per_s'] / baseline['mentions_per_s']:.1f}x baseline; today's default = {ratio:.2f}x it",
          flush=True)
    distinct = workload(args.posts, reposts=0.0)
    no_reposts = run_ours(distinct, args.batch, args.bucket, "none")
    print(f"ours fp32 (default) on {len(distinct)} posts without reposts ({len(set(distinct))} distinct: nothing to "
          f"skip): {json.dumps(no_reposts)}  = {no_reposts['mentions_per_s'] / baseline['mentions_per_s']:.1f}x baseline",
          flush=True)

    def today() -> float:
        return run_ours(posts, args.batch, args.bucket, "none")["mentions_per_s"]

    def before_17() -> float:
        return run_ours(posts, args.batch, args.bucket, "none", heads=False, window=64, long_tokens=64)["mentions_per_s"]

    ratios = []
    for pair in range(args.pairs):
        if pair % 2 == 0:
            now, then = today(), before_17()
        else:
            then, now = before_17(), today()
        ratios.append(now / then)
        print(f"pair {pair + 1}: today's default {now} vs before issue #17 {then} mentions/s = {ratios[-1]:.3f}x", flush=True)
    if ratios:
        print(f"today's default / before issue #17 over {len(ratios)} pairs: mean {statistics.mean(ratios):.3f}x, "
              f"sd {statistics.stdev(ratios) if len(ratios) > 1 else 0.0:.3f}", flush=True)


if __name__ == "__main__":
    main()
