"""The influence score: evidence before reach, reach only where it is known."""

import json
from importlib import resources

from stimmung.config import InfluenceSettings
from stimmung.pipeline.influence import influence_score, update_author

SETTINGS = InfluenceSettings()


def score_after(posts: list[tuple[int | None, int]], platform: str = "mastodon") -> float:
    state = None
    for followers, engagement in posts:
        state = update_author(state, followers, engagement, SETTINGS)
    assert state is not None
    return influence_score(platform, state["followers"], state["engagement"], SETTINGS)


def test_unknown_followers_cannot_make_an_opinion_leader():
    assert score_after([(None, 28)], "csv") < 40
    assert score_after([(None, 10_000)] * 50, "csv") <= 60  # capped: reach unproven


def test_one_lucky_post_counts_less_than_a_history_of_them():
    once, often = score_after([(5000, 28)]), score_after([(5000, 28)] * 10)
    assert once < often and often - once > 5


def test_states_written_before_the_shrinkage_keep_their_average():
    old = {"n": 30, "engagement": 12.0, "followers": 800}
    new = update_author(old, 800, 12, SETTINGS)
    assert new["ewma"] == 12.0 and abs(new["engagement"] - 12.0 * 31 / 33) < 1e-9


def test_few_ordinary_authors_of_the_sample_score_like_vips():
    sample = resources.files("stimmung").joinpath("data/sample_mentions.jsonl").read_text(encoding="utf-8")
    states: dict[tuple[str, str], dict] = {}
    for line in sample.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # the sample's deliberately malformed lines
        if not isinstance(row, dict) or not row.get("author"):
            continue
        key = (str(row.get("platform")), str(row["author"]))
        engagement = (row.get("likes") or 0) + 2 * (row.get("shares") or 0) + (row.get("replies") or 0)
        states[key] = update_author(states.get(key), row.get("followers"), engagement, SETTINGS)
    scores = [influence_score(p, s["followers"], s["engagement"], SETTINGS) for (p, _), s in states.items()]
    assert len(scores) > 30
    assert sum(score >= 80 for score in scores) <= 0.05 * len(scores)
