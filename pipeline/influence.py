"""Influence of an author (docs/influence.md): reach and resonance, normalised per platform.

    F = min(1, log10(1 + followers)   / log10(1 + reference_followers[platform]))
    E = min(1, log10(1 + engagement)  / log10(1 + reference_engagement[platform]))
    influence = 100 × (0.6·F + 0.4·E)        (100 × 0.6·E where the follower count is unknown)

``engagement`` is the author's exponentially weighted average of likes + 2×shares + replies per
mention (shares count double: they carry the post to new audiences), shrunk by n / (n + 2) after
n mentions, kept per pseudonym on the compacted influence topic (read whole by every worker,
pipeline/views.py) so it grows with the author's history rather than one lucky post. Logarithms because
reach is heavy-tailed: 1,000 → 10,000 followers matters as much as 10 → 100. The references are
"a clearly influential account on this platform" and are settings (``crm.influence``).
"""

from __future__ import annotations

import math
from typing import Any

from stimmung.config import InfluenceSettings

# Reach is unproven where the platform reports no follower count: engagement alone can lift an
# author to at most this share of the scale (a few liked posts are not an opinion leader).
NO_FOLLOWERS_CAP = 0.6
# Engagement is shrunk toward zero by this many imaginary silent mentions, so one lucky post
# counts a third, ten posts count 83 %: the score grows with evidence instead of jumping.
PRIOR_MENTIONS = 2.0


def influence_score(platform: str, followers: int | None, engagement: float, settings: InfluenceSettings) -> float:
    ref_f = settings.reference_followers.get(platform, settings.reference_followers.get("default", 20_000))
    ref_e = settings.reference_engagement.get(platform, settings.reference_engagement.get("default", 200.0))
    e = min(1.0, math.log10(1 + max(engagement, 0.0)) / math.log10(1 + ref_e))
    if followers is None:
        return round(100 * NO_FOLLOWERS_CAP * e, 1)
    f = min(1.0, math.log10(1 + max(followers, 0)) / math.log10(1 + ref_f))
    return round(100 * (0.6 * f + 0.4 * e), 1)


def update_author(state: dict[str, Any] | None, followers: int | None, engagement: int,
                  settings: InfluenceSettings) -> dict[str, Any]:
    """Fold one mention into the author's running state (a JSON dict).

    ``ewma`` is the weighted average engagement per mention; ``engagement`` (what the score uses)
    is that average shrunk by the evidence so far (states written before ``ewma`` existed carry
    their average in ``engagement`` and are read as such).
    """
    state = dict(state or {"n": 0, "engagement": 0.0, "followers": None})
    ewma = float(state.get("ewma", state["engagement"]))
    state["n"] += 1
    rate = max(1.0 / state["n"], 1.0 - 0.5 ** (1.0 / settings.half_life_mentions))
    ewma += rate * (engagement - ewma)
    state["ewma"] = ewma
    state["engagement"] = ewma * state["n"] / (state["n"] + PRIOR_MENTIONS)
    if followers is not None:
        state["followers"] = followers
    return state
