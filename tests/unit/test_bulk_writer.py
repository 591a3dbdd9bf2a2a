"""BulkWriter's per-item logic against a scripted client (pure logic; the real node is in integration)."""

import json
import time

from elastic_transport import ConnectionError as TransportConnectionError
from prometheus_client import REGISTRY

from stimmung.pipeline.elastic.mentions import IndexLayout
from stimmung.pipeline.enrich import InMessage
from stimmung.pipeline.sink import BulkWriter, Doc, make_breaker

LAYOUT = IndexLayout("idx")


class Indices:
    def __init__(self):
        self.created = []

    def create(self, index, settings=None):
        self.created.append(index)


class ScriptedClient:
    def __init__(self, responses):
        self.responses = list(responses)
        self.calls = []
        self.indices = Indices()

    def bulk(self, operations, refresh):
        self.calls.append([json.loads(op)["index"]["_id"] for op in operations[::2]])
        response = self.responses.pop(0)
        if isinstance(response, Exception):
            raise response
        return {"items": [{"index": item} for item in response(self.calls[-1])]}


def docs(*ids):
    return [Doc(InMessage("enriched", 0, n, i.encode(), b"{}"), "idx-v2-2026.11", i, json.dumps({"text": i}).encode(), 2)
            for n, i in enumerate(ids)]


def ok(ids):
    return [{"status": 201} for _ in ids]


def test_retries_throttled_items_then_dead_letters_mapping_errors():
    def first(ids):
        return [{"status": 201}, {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "busy"}},
                {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [x]",
                                          "caused_by": {"reason": "not a number"}}}]
    client = ScriptedClient([first, ok])
    sleeps = []
    writer = BulkWriter(client, LAYOUT, sleep=sleeps.append)
    indexed, letters = writer.write(docs("a", "b", "c"))
    assert indexed == 2
    assert client.calls == [["a", "b", "c"], ["b"]]
    (letter,) = letters
    assert letter.error_type == "mapper_parsing_exception" and "not a number" in letter.reason and letter.offset == 2
    assert len(sleeps) == 1
    assert client.indices.created == ["idx-v2-2026.11"], "the period index is created once, before the first write"


def test_gives_up_on_an_item_only_after_max_retries_and_says_so():
    def always_429(ids):
        return [{"status": 429, "error": {"type": "x", "reason": "busy"}} for _ in ids]
    client = ScriptedClient([always_429] * 4)
    indexed, letters = BulkWriter(client, LAYOUT, max_item_retries=3, sleep=lambda s: None).write(docs("a"))
    assert indexed == 0 and len(client.calls) == 4
    assert letters[0].error_type == "retries_exhausted" and "after 3 retries" in letters[0].reason


def test_whole_request_failures_are_retried_until_elasticsearch_answers():
    down = TransportConnectionError("connection refused")
    client = ScriptedClient([down, down, down, ok])
    unavailable = []
    writer = BulkWriter(client, LAYOUT, sleep=lambda s: None, on_unavailable=lambda: unavailable.append(1))
    indexed, letters = writer.write(docs("a", "b"))
    assert (indexed, letters) == (2, [])
    assert len(client.calls) == 4 and len(unavailable) == 3


def test_circuit_opens_after_repeated_failures_sends_nothing_while_open_then_one_trial_closes_it():
    down = TransportConnectionError("connection refused")
    client = ScriptedClient([down, down, ok])
    state = lambda: REGISTRY.get_sample_value("stimmung_sink_circuit_state")  # noqa: E731
    opened_before = REGISTRY.get_sample_value("stimmung_sink_circuit_opened_total") or 0
    seen = []

    def sleep(s):
        seen.append((state(), len(client.calls)))
        time.sleep(0.05)

    writer = BulkWriter(client, LAYOUT, breaker=make_breaker(fail_max=2, reset_s=0.2), sleep=sleep)
    indexed, _ = writer.write(docs("a"))
    assert indexed == 1 and len(client.calls) == 3
    open_waits = [calls for st, calls in seen if st == 2]
    assert len(open_waits) >= 2, "several waits while open"
    assert set(open_waits) == {2}, "no request reaches Elasticsearch while the circuit is open"
    assert state() == 0
    assert REGISTRY.get_sample_value("stimmung_sink_circuit_opened_total") == opened_before + 1


def test_a_non_retryable_error_is_an_answer_not_an_outage():
    from elasticsearch import ApiError

    class Meta:
        status = 400
        headers = {}

    bad = ApiError("bad request", Meta(), {"error": {"type": "parse_exception", "reason": "x"}})
    client = ScriptedClient([bad])
    breaker = make_breaker(fail_max=1, reset_s=60)
    writer = BulkWriter(client, LAYOUT, breaker=breaker, sleep=lambda s: None)
    try:
        writer.write(docs("a"))
    except ApiError:
        pass
    else:
        raise AssertionError("a 400 for the whole request must surface")
    assert breaker.current_state == "closed"


def test_prepare_routes_by_creation_period_and_skips_erased_authors_and_expired_mentions():
    from datetime import datetime, timedelta, timezone

    from stimmung.pipeline.sink import prepare
    from stimmung.schemas import EnrichedMention

    def msg(n, pseudonym, created):
        m = EnrichedMention(platform="csv", native_id=str(n), text="t", created_at=created, language="de",
                            language_confidence=0.9, language_source="model",
                            author={"pseudonym": pseudonym} if pseudonym else None)
        return InMessage("enriched", 0, n, b"k", m.model_dump_json().encode())

    now = datetime(2026, 11, 23, tzinfo=timezone.utc)
    batch = [msg(0, "psn_keep", now), msg(1, "psn_gone", now), msg(2, "psn_keep", now - timedelta(days=400)),
             msg(3, "psn_keep", datetime(2026, 10, 31, 23, 59, tzinfo=timezone.utc)),
             InMessage("enriched", 0, 4, b"k", b"{not json"), msg(5, None, now)]  # no author: indexed
    out = prepare(batch, LAYOUT, erased=frozenset({"psn_gone"}), not_before=now - timedelta(days=365))
    v = LAYOUT.version
    assert [d.index for d in out.docs] == [f"idx-v{v}-2026.11", f"idx-v{v}-2026.10", f"idx-v{v}-2026.11"]
    assert out.skipped == {"erased": 1, "retention": 1}
    assert [letter.offset for letter in out.dead_letters] == [4]
