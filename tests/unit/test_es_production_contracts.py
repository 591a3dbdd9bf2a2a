"""Contract tests for the production Elasticsearch branches the local test node cannot run
(issue #20 item 7): ``_delete_by_query``, ``_update_by_query`` and ILM. The node is the
integ-test distribution, which lacks the reindex module and x-pack ILM; Maven Central has
neither for 8.19 (org.elasticsearch.module:reindex stops at 2.4.5, there is no x-pack-ilm
artifact, the full zip stops at 6.8.23; x-pack-core 8.19.21 is a library jar, not a module).
So here the real elasticsearch-py client talks to a small HTTP server that answers with the
responses Elasticsearch documents for these APIs, and we check that our code sends the
documented request and reads the documented answer — the branch the fallbacks replace locally."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from elasticsearch import Elasticsearch

from stimmung.pipeline.crm.consent import update_by_query
from stimmung.pipeline.elastic.client import has_ilm
from stimmung.pipeline.erasure import delete_mentions_of

# Response bodies as in the Elasticsearch 8.x reference ("Delete by query API", "Update by
# query API", "Get index lifecycle management status API").
DELETE_BY_QUERY = {"took": 147, "timed_out": False, "total": 3, "deleted": 3, "batches": 1, "version_conflicts": 0,
                   "noops": 0, "retries": {"bulk": 0, "search": 0}, "throttled_millis": 0, "requests_per_second": -1.0,
                   "throttled_until_millis": 0, "failures": []}
UPDATE_BY_QUERY = {**DELETE_BY_QUERY, "deleted": 0, "updated": 2, "total": 2}
ILM_STATUS = {"operation_mode": "RUNNING"}


class FakeCluster(BaseHTTPRequestHandler):
    routes: dict = {}
    seen: list = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = self.path.split("?")[0]
        FakeCluster.seen.append((self.command, self.path, body))
        status, payload = next(((s, p) for suffix, (s, p) in self.routes.items() if path.endswith(suffix)),
                               (404, {"error": "no handler found for uri [%s]" % path, "status": 404}))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *_):  # quiet
        pass


@pytest.fixture
def cluster():
    FakeCluster.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCluster)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = Elasticsearch(f"http://127.0.0.1:{server.server_address[1]}")
    yield client
    client.close()
    server.shutdown()


def test_erasure_uses_delete_by_query_and_reads_deleted(cluster):
    FakeCluster.routes = {"/_delete_by_query": (200, DELETE_BY_QUERY)}
    assert delete_mentions_of(cluster, "m", ["psn_" + "a" * 32]) == (3, "delete_by_query")
    method, path, body = FakeCluster.seen[-1]
    assert method == "POST" and path.startswith("/m/_delete_by_query")
    assert "conflicts=proceed" in path and "refresh=true" in path
    assert body == {"query": {"terms": {"author.pseudonym": ["psn_" + "a" * 32]}}}


def test_consent_unlinking_uses_update_by_query_with_painless(cluster):
    FakeCluster.routes = {"/_update_by_query": (200, UPDATE_BY_QUERY)}
    changed = update_by_query(cluster, "m", {"term": {"author.pseudonym": "p"}}, "ctx._source.author.remove('contact_id')",
                              lambda s: None)
    assert changed == 2
    method, path, body = FakeCluster.seen[-1]
    assert method == "POST" and "refresh=true" in path and body["conflicts"] == "proceed"  # the client sends it in the body
    assert body["script"] == {"source": "ctx._source.author.remove('contact_id')", "lang": "painless"}


def test_a_refused_update_by_query_that_is_not_a_missing_module_is_raised(cluster):
    from elasticsearch import ApiError

    FakeCluster.routes = {"/_update_by_query": (400, {"error": {"type": "parsing_exception", "reason": "bad query"},
                                                       "status": 400})}
    with pytest.raises(ApiError):
        update_by_query(cluster, "m", {"bogus": {}}, "ctx._source.x = 1", lambda s: None)


def test_ilm_detected_from_its_status_api(cluster):
    FakeCluster.routes = {"/_ilm/status": (200, ILM_STATUS)}
    assert has_ilm(cluster) is True
    FakeCluster.routes = {}
    assert has_ilm(cluster) is False  # the integ-test node: "no handler found for uri [/_ilm/status]"
