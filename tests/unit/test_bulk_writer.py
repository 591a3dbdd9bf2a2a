"""BulkWriter's per-item logic against a scripted client (pure logic; the real node is in integration)."""

from elastic_transport import ConnectionError as TransportConnectionError

from stimmung.pipeline.enrich import InMessage
from stimmung.pipeline.sink import BulkWriter, Doc


class ScriptedClient:
    def __init__(self, responses):
        self.responses = list(responses)
        self.calls = []

    def bulk(self, operations, refresh):
        self.calls.append([op["index"]["_id"] for op in operations[::2]])
        response = self.responses.pop(0)
        if isinstance(response, Exception):
            raise response
        return {"items": [{"index": item} for item in response(self.calls[-1])]}


def docs(*ids):
    return [Doc(InMessage("enriched", 0, n, i.encode(), b"{}"), i, {"text": i}, 2) for n, i in enumerate(ids)]


def ok(ids):
    return [{"status": 201} for _ in ids]


def test_retries_throttled_items_then_dead_letters_mapping_errors():
    def first(ids):
        return [{"status": 201}, {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "busy"}},
                {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse field [x]",
                                          "caused_by": {"reason": "not a number"}}}]
    client = ScriptedClient([first, ok])
    sleeps = []
    writer = BulkWriter(client, "idx", sleep=sleeps.append)
    indexed, letters = writer.write(docs("a", "b", "c"))
    assert indexed == 2
    assert client.calls == [["a", "b", "c"], ["b"]]
    (letter,) = letters
    assert letter.error_type == "mapper_parsing_exception" and "not a number" in letter.reason and letter.offset == 2
    assert len(sleeps) == 1


def test_gives_up_on_an_item_only_after_max_retries_and_says_so():
    def always_429(ids):
        return [{"status": 429, "error": {"type": "x", "reason": "busy"}} for _ in ids]
    client = ScriptedClient([always_429] * 4)
    indexed, letters = BulkWriter(client, "idx", max_item_retries=3, sleep=lambda s: None).write(docs("a"))
    assert indexed == 0 and len(client.calls) == 4
    assert letters[0].error_type == "retries_exhausted" and "after 3 retries" in letters[0].reason


def test_whole_request_failures_are_retried_until_elasticsearch_answers():
    down = TransportConnectionError("connection refused")
    client = ScriptedClient([down, down, down, ok])
    unavailable = []
    writer = BulkWriter(client, "idx", sleep=lambda s: None, on_unavailable=lambda: unavailable.append(1))
    indexed, letters = writer.write(docs("a", "b"))
    assert (indexed, letters) == (2, [])
    assert len(client.calls) == 4 and len(unavailable) == 3
