"""Waiting politely: exponential backoff with jitter, and what servers say about when to retry."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Mapping


class Backoff:
    """Exponential backoff with full jitter (the AWS architecture blog's variant): spreads
    retries of many clients instead of synchronising them."""

    def __init__(self, base_s: float = 0.2, cap_s: float = 30.0):
        self.base_s, self.cap_s, self.attempt = base_s, cap_s, 0

    def next_delay(self) -> float:
        delay = random.uniform(0, min(self.cap_s, self.base_s * (2 ** self.attempt)))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def _seconds_until(value: str, now: datetime) -> float | None:
    """A reset given as delta seconds, epoch seconds, an ISO-8601 time or an HTTP date."""
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        # Large numbers are epoch timestamps (GitHub/Twitter style), small ones are deltas.
        return max(0.0, number - now.timestamp()) if number > 1e9 else max(0.0, number)
    for parse in (lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")), parsedate_to_datetime):
        try:
            when = parse(value)
        except (ValueError, TypeError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - now).total_seconds())
    return None


def retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the server asks us to wait: ``Retry-After`` (seconds or HTTP date), else an
    exhausted ``X-RateLimit-*`` budget's reset (Mastodon: ISO time; Reddit: seconds; X spells
    it ``x-rate-limit-*`` with epoch seconds)."""
    now = now or datetime.now(timezone.utc)
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after" in lower:
        return _seconds_until(lower["retry-after"], now)
    remaining = lower.get("x-ratelimit-remaining", lower.get("x-rate-limit-remaining"))
    reset = lower.get("x-ratelimit-reset", lower.get("x-rate-limit-reset"))
    if remaining is not None and reset is not None:
        try:
            exhausted = float(remaining) < 1
        except ValueError:
            return None
        if exhausted:
            return _seconds_until(reset, now)
    return None
