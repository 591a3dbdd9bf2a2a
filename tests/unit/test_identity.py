"""One identity per author: the same account read through two paths gets one pseudonym."""

import pytest

from stimmung.brandquery import Target, parse
from stimmung.connectors.bluesky.client import Event
from stimmung.connectors.bluesky.source import to_mention as bluesky_mention
from stimmung.connectors.fileimport.source import row_to_mention
from stimmung.connectors.mastodon.source import to_mention as mastodon_mention
from stimmung.connectors.reddit.source import to_mention as reddit_mention
from stimmung.connectors.webhook.mapping import from_meta
from stimmung.connectors.x.source import to_mention as x_mention
from stimmung.pipeline.identity import Alias, aliases_from_file, aliases_from_raw, merge_influence, plan_moves
from stimmung.schemas.identity import author_key, key_hint, legacy_key
from stimmung.schemas.mention import RawMention
from stimmung.schemas.pseudonym import Pseudonymizer

KEY = "k" * 32
P = Pseudonymizer(KEY)


def _status(acct: str) -> dict:
    return {"id": "1", "uri": "https://mastodon.social/users/Gargron/statuses/1", "created_at": "2026-11-20T10:00:00Z",
            "content": "<p>Nordbahn!</p>", "account": {"acct": acct, "username": "Gargron", "followers_count": 5}}


@pytest.mark.parametrize("instance", ["mastodon.social", "https://mastodon.social", "https://Mastodon.Social:443/"])
def test_mastodon_home_and_remote_instance_give_one_pseudonym(instance):
    home = mastodon_mention(_status("Gargron"), instance)  # local account: no domain in acct
    remote = mastodon_mention(_status("Gargron@mastodon.social"), "chaos.social")
    assert home.author.handle == remote.author.handle == "gargron@mastodon.social"
    assert P.pseudonym("mastodon", home.author.handle) == P.pseudonym("mastodon", remote.author.handle)
    # The spelling the tester saw stored (scheme included) is the same author too.
    assert P.pseudonym("mastodon", "Gargron@https://mastodon.social") == P.pseudonym("mastodon", home.author.handle)


@pytest.mark.parametrize("typed", ["@Gargron@mastodon.social", "Gargron@mastodon.social", "https://mastodon.social/@Gargron",
                                   "https://mastodon.social/@Gargron/113000000", "https://mastodon.social/users/gargron",
                                   "acct:gargron@MASTODON.social", "gargron@mastodon.social:443"])
def test_mastodon_operator_spellings_map_to_the_key(typed):
    assert author_key("mastodon", typed) == "gargron@mastodon.social"


def test_mastodon_host_forms():
    assert author_key("mastodon", "anna@127.0.0.1:8080") == "anna@127.0.0.1:8080"  # a non-default port stays
    assert author_key("mastodon", "anna@münchen.social") == author_key("mastodon", "anna@xn--mnchen-3ya.social")
    assert author_key("mastodon", "anna@münchen.social") == "anna@xn--mnchen-3ya.social"
    assert author_key("mastodon", "https://host.example/@bob@other.example") == "bob@other.example"
    assert author_key("mastodon", "bahnfahrerin") == "bahnfahrerin"  # no host known: kept


def test_bluesky_did_wins_over_handle_and_connector_uses_it():
    event = Event(kind="commit", position=1, did="did:plc:abc123", time_us=1_763_800_000_000_000, collection="app.bsky.feed.post",
                  rkey="3k1", record={"text": "Nordbahn", "createdAt": "2026-11-20T10:00:00Z"}, raw="")
    post = bluesky_mention(event)
    assert post.author.handle == "did:plc:abc123"
    # An import that knows both (author_id = DID, author_handle = handle) is the same author.
    row = row_to_mention({"id": "1", "text": "Nordbahn", "created_at": "2026-11-20T10:00:00Z", "author_id": "did:plc:abc123",
                          "author": "alice.bsky.social", "platform": "bluesky"},
                         {"native_id": "id", "text": "text", "created_at": "created_at", "author_id": "author_id",
                          "author_handle": "author", "platform": "platform"}, "import")
    assert row.author.handle == "did:plc:abc123" and row.author.display_handle == "alice.bsky.social"
    assert P.pseudonym("bluesky", row.author.handle) == P.pseudonym("bluesky", post.author.handle)
    for typed in ("at://did:plc:abc123/app.bsky.feed.post/3k1", "https://bsky.app/profile/did:plc:abc123"):
        assert P.pseudonym("bluesky", typed) == P.pseudonym("bluesky", post.author.handle)
    assert author_key("bluesky", "https://bsky.app/profile/Alice.bsky.social") == "alice.bsky.social"
    assert key_hint("bluesky", "alice.bsky.social") and key_hint("bluesky", "did:plc:abc123") is None


def _x_post(username: str) -> dict:
    return {"data": {"id": "99", "text": "Nordbahn", "created_at": "2026-11-20T10:00:00.000Z", "author_id": "2244994945"},
            "includes": {"users": [{"id": "2244994945", "username": username, "name": "Dev"}]}}


def test_x_author_is_the_user_id_whatever_the_username():
    before, renamed = x_mention(_x_post("XDevelopers")), x_mention(_x_post("XDevs"))
    assert before.author.handle == renamed.author.handle == "2244994945"
    assert (before.author.display_handle, renamed.author.display_handle) == ("XDevelopers", "XDevs")
    assert P.pseudonym("x", before.author.handle) == P.pseudonym("x", renamed.author.handle)
    assert author_key("x", "https://x.com/XDevs/status/1") == author_key("x", "@xdevs") == "xdevs"
    assert key_hint("x", "@XDevs") and key_hint("x", "2244994945") is None


def test_reddit_username_any_spelling():
    item = {"name": "t1_a", "created_utc": 1_763_800_000, "body": "Nordbahn", "author": "ZugChaos", "permalink": "/r/x/c/a"}
    assert reddit_mention(item).author.handle == "zugchaos"
    for typed in ("u/ZugChaos", "/u/zugchaos", "/user/ZugChaos/", "https://www.reddit.com/user/ZugChaos/"):
        assert P.pseudonym("reddit", typed) == P.pseudonym("reddit", "ZugChaos")


def test_meta_sender_id_is_the_key_and_username_display():
    payload = {"object": "instagram", "entry": [{"id": "p", "time": 1_763_800_000, "changes": [{"field": "comments", "value": {
        "id": "c1", "text": "Nordbahn?", "from": {"id": "178414", "username": "kunde.eins"}}}]}]}
    (mention,) = from_meta(payload)
    assert mention.author.handle == "178414" and mention.author.display_handle == "kunde.eins"


def test_other_platforms_keep_their_old_pseudonyms():
    for platform, handle in (("csv", " @Müller "), ("hackernews", "pg"), ("rss", "Blogger"), ("mastodon", "jana@social.example"),
                             ("bluesky", "did:plc:abc"), ("x", "jack"), ("reddit", "Zug")):
        assert P.pseudonym(platform, handle) == P.legacy_pseudonym(platform, handle), (platform, handle)
    assert legacy_key(" @Müller ") == "müller"


def test_brand_query_author_matches_any_spelling_on_the_mention_platform():
    mention = mastodon_mention(_status("Gargron"), "mastodon.social")
    target = Target.of(mention.text, None, mention.url, mention.author.handle, "mastodon")
    for query in ("author:@Gargron@mastodon.social", 'author:"https://mastodon.social/@Gargron"', "author:gargron@mastodon.social"):
        assert parse(query).matches(target), query
    assert not parse("author:@Gargron@chaos.social").matches(target)
    tweet = x_mention(_x_post("XDevs"))
    x_target = Target.of(tweet.text, None, tweet.url, tweet.author.handle, "x", tweet.author.display_handle)
    assert parse("author:@xdevs").matches(x_target) and parse("author:2244994945").matches(x_target)


def test_migration_plan_maps_old_spellings_to_canonical_pseudonyms():
    raw = [b'{"platform": "mastodon", "author": {"handle": "Gargron@https://mastodon.social"}}',
           b'{"platform": "mastodon", "author": {"handle": "gargron@mastodon.social"}}',
           b'{"platform": "x", "author": {"handle": "2244994945", "display_handle": "XDevs"}}',
           b'not json', b'{"platform": "x"}', None]
    aliases = list(aliases_from_raw(raw))
    assert Alias("x", "XDevs", "2244994945") in aliases and len(aliases) == 4
    plan = plan_moves(P, aliases)
    canonical = P.pseudonym("mastodon", "gargron@mastodon.social")
    assert plan.moves == {P.legacy_pseudonym("mastodon", "Gargron@https://mastodon.social"): (canonical, "mastodon"),
                          P.legacy_pseudonym("x", "XDevs"): (P.pseudonym("x", "2244994945"), "x")}
    # One username held by two accounts in turn: ambiguous, left alone rather than guessed.
    plan = plan_moves(P, [Alias("x", "jack", "12"), Alias("x", "jack", "13")])
    assert plan.moves == {} and plan.ambiguous == 1


def test_handles_file(tmp_path):
    path = tmp_path / "handles.csv"
    path.write_text("platform,handle,key\n# X usernames to ids\nx,jack,12\nmastodon,Gargron@https://mastodon.social\n\n")
    assert aliases_from_file(path) == [Alias("x", "jack", "12"), Alias("mastodon", "Gargron@https://mastodon.social")]
    path.write_text("x\n")
    with pytest.raises(ValueError, match=r"handles.csv:1: expected platform,handle\[,key\]"):
        aliases_from_file(path)


def test_influence_states_merge_by_mention_count():
    merged = merge_influence({"n": 1, "ewma": 10.0, "engagement": 10 / 3, "followers": 50},
                             {"n": 3, "ewma": 2.0, "engagement": 1.2, "followers": None})
    assert merged["n"] == 4 and merged["ewma"] == pytest.approx(4.0) and merged["followers"] == 50
    assert merged["engagement"] == pytest.approx(4.0 * 4 / 6)
    assert merge_influence(None, {"n": 1, "engagement": 1.0}) == {"n": 1, "engagement": 1.0}



def test_enrichment_pseudonymises_the_key_and_holds_back_an_address_naming_the_display_handle():
    from stimmung.models import Enricher
    from stimmung.models.language import LanguageAnnotator
    from stimmung.pipeline.enrich import InMessage, MentionEnrichment

    processing = MentionEnrichment(Enricher([LanguageAnnotator()]), P)
    imported = RawMention(platform="x", native_id="5", text="Nordbahn ist wieder zu spät dran heute.",
                          url="https://x.com/XDevs/status/5", created_at="2026-11-20T10:00:00Z",
                          author={"handle": "2244994945", "display_handle": "XDevs"})
    (m,), _ = processing.process([InMessage("raw", 0, 0, b"k", imported.model_dump_json().encode())])
    assert m.author.pseudonym == P.pseudonym("x", "2244994945") == P.pseudonym("x", x_mention(_x_post("XDevs")).author.handle)
    assert m.url is None and m._held_url == "https://x.com/XDevs/status/5", "the address names the author's username"
