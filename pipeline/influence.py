"""Influence of an author (docs/influence.md): reach and resonance, normalised per platform.

    F = min(1, log10(1 + followers)   / log10(1 + reference_followers[platform]))
    E = min(1, log10(1 + engagement)  / log10(1 + reference_engagement[platform]))
    influence = 100 × (0.6·F + 0.4·E)        (100 × E where the platform has no follower counts)

``engagement`` is the author's exponentially weighted average of likes + 2×shares + replies per
mention (shares count double: they carry the post to new audiences), kept per pseudonym on the
compacted influence topic (read whole by every worker, pipeline/views.py) so it grows with the
author's history rather than one lucky post. Logarithms because
reach is heavy-tailed: 1,000 → 10,000 followers matters as much as 10 → 100. The references are
"a clearly influential account on this platform" and are settings (``crm.influence``).
"""

from __future__ import annotations

import math
from typing import Any

from stimmung.config import InfluenceSettings


def influence_score(platform: str, followers: int | None, engagement: float, settings: InfluenceSettings) -> float:
    ref_f = settings.reference_followers.get(platform, settings.reference_followers.get("default", 5000))
    ref_e = settings.reference_engagement.get(platform, settings.reference_engagement.get("default", 20.0))
    e = min(1.0, math.log10(1 + max(engagement, 0.0)) / math.log10(1 + ref_e))
    if followers is None:
        return round(100 * e, 1)
    f = min(1.0, math.log10(1 + max(followers, 0)) / math.log10(1 + ref_f))
    return round(100 * (0.6 * f + 0.4 * e), 1)


def update_author(state: dict[str, Any] | None, followers: int | None, engagement: int,
                  settings: InfluenceSettings) -> dict[str, Any]:
    """Fold one mention into the author's running state (a JSON dict)."""
    state = dict(state or {"n": 0, "engagement": 0.0, "followers": None})
    state["n"] += 1
    rate = max(1.0 / state["n"], 1.0 - 0.5 ** (1.0 / settings.half_life_mentions))
    state["engagement"] += rate * (engagement - state["engagement"])
    if followers is not None:
        state["followers"] = followers
    return state
