"""Kibana saved objects: NDJSON structure, references, and every field they use exists in the mappings.

Kibana itself cannot run on our machines (no distribution on Maven Central, PyPI or npm); the
import client is checked against a loopback HTTP server that enforces the documented contract of
POST /api/saved_objects/_import (kbn-xsrf header, multipart "file" field, overwrite flag, auth).
"""

from __future__ import annotations

import json
import threading
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from stimmung.config import KibanaSettings
from stimmung.kibana import (
    ALERTS_VIEW,
    CASES_VIEW,
    CORRECTIONS_VIEW,
    MENTIONS_VIEW,
    NDJSON_PATH,
    KibanaError,
    build_objects,
    fields_used,
    import_objects,
    to_ndjson,
)
from stimmung.pipeline.elastic.client import Capabilities
from stimmung.pipeline.elastic.corrections import corrections_mapping
from stimmung.pipeline.elastic.indices import alerts_mapping, cases_mapping
from stimmung.pipeline.elastic.mentions import mentions_mapping

LINES = NDJSON_PATH.read_text(encoding="utf-8").splitlines()
OBJECTS = [json.loads(line) for line in LINES]


def _field_types(mapping, prefix=""):
    for name, spec in mapping["properties"].items():
        if "properties" in spec:
            yield from _field_types(spec, prefix + name + ".")
        else:
            yield prefix + name, spec["type"], spec.get("index", True)


FIELDS = {
    MENTIONS_VIEW: {f: (t, i) for f, t, i in _field_types(mentions_mapping(Capabilities(frozenset())))},
    ALERTS_VIEW: {f: (t, i) for f, t, i in _field_types(alerts_mapping())},
    CASES_VIEW: {f: (t, i) for f, t, i in _field_types(cases_mapping())},
    CORRECTIONS_VIEW: {f: (t, i) for f, t, i in _field_types(corrections_mapping())},
}


def test_committed_ndjson_is_current():
    assert NDJSON_PATH.read_text(encoding="utf-8") == to_ndjson(build_objects()), \
        "run `stimmung kibana export --out deploy/kibana/stimmung.ndjson` after changing stimmung/kibana.py"


def test_every_line_is_a_saved_object_with_unique_id_and_resolvable_references():
    ids = {(o["type"], o["id"]) for o in OBJECTS}
    assert len(ids) == len(OBJECTS)
    for o in OBJECTS:
        assert set(o) >= {"type", "id", "attributes", "references", "coreMigrationVersion", "typeMigrationVersion"}
        assert o["attributes"]["title"]
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in ids, f"{o['id']} refers to missing {ref}"
    types = {o["type"] for o in OBJECTS}
    assert types == {"index-pattern", "search", "lens", "dashboard"}


def test_dashboard_panels_point_at_references_and_cover_what_analysts_asked_for():
    (dash,) = [o for o in OBJECTS if o["type"] == "dashboard"]
    panels = json.loads(dash["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in dash["references"]}
    titles = {(o["type"], o["id"]): o["attributes"]["title"] for o in OBJECTS}
    shown = []
    for p in panels:
        ref = refs[p["panelRefName"]]
        assert ref["type"] == p["type"]
        shown.append(titles[(ref["type"], ref["id"])].lower())
        g = p["gridData"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 48, "Kibana's grid is 48 columns wide"
    for wanted in ("over time by sentiment", "topics", "languages", "platforms", "top authors by reach",
                   "alerts", "complaints"):
        assert any(wanted in t for t in shown), wanted
    # panels must not overlap
    cells = set()
    for p in panels:
        g = p["gridData"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine
        cells |= mine


def test_every_field_an_object_uses_exists_in_the_mapping_with_a_usable_type():
    checked = 0
    for o in OBJECTS:
        for view, field in fields_used(o):
            assert field in FIELDS[view], f"{o['id']} uses {field}, which {view}'s mapping lacks"
            ftype, indexed = FIELDS[view][field]
            checked += 1
            if o["type"] == "lens":
                assert indexed, f"{o['id']} aggregates on unindexed {field}"
    assert checked > 30
    for o in OBJECTS:
        if o["type"] != "lens":
            continue
        for layer in o["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values():
            for col in layer["columns"].values():
                field = col.get("sourceField")
                view = o["references"][0]["id"]
                if col["operationType"] == "terms":
                    assert FIELDS[view][field][0] == "keyword", (o["id"], field)
                elif col["operationType"] == "date_histogram":
                    assert FIELDS[view][field][0] == "date", (o["id"], field)
                elif col["operationType"] in ("max", "sum", "average"):
                    assert FIELDS[view][field][0] in ("long", "float", "double"), (o["id"], field)
                # every accessor the visualization names is a column
            vis = json.dumps(o["attributes"]["state"]["visualization"])
            for col_id in layer["columns"]:
                assert f'"{col_id}"' in vis, f"{o['id']}: column {col_id} is not shown"


def test_import_uses_configured_index_names():
    objects = build_objects("acme-mentions", "acme-alerts", "acme-cases", "acme-corrections")
    titles = {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    assert titles == {MENTIONS_VIEW: "acme-mentions", ALERTS_VIEW: "acme-alerts", CASES_VIEW: "acme-cases",
                      CORRECTIONS_VIEW: "acme-corrections"}


class _Kibana(BaseHTTPRequestHandler):
    received: list = []
    answer: tuple[int, dict] = (200, {})

    def do_POST(self):  # noqa: N802
        length = int(self.headers["Content-Length"])
        body = self.rfile.read(length)
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
        parts = {part.get_param("name", header="content-disposition"): part.get_content() for part in message.iter_parts()}
        type(self).received.append({"path": self.path, "xsrf": self.headers.get("kbn-xsrf"),
                                    "auth": self.headers.get("Authorization"), "parts": parts})
        if not self.headers.get("kbn-xsrf"):
            status, payload = 400, {"message": "Request must contain a kbn-xsrf header."}
        else:
            status, payload = type(self).answer
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def kibana_server():
    server = HTTPServer(("127.0.0.1", 0), _Kibana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Kibana.received = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_import_posts_multipart_ndjson_with_xsrf_overwrite_space_and_api_key(kibana_server):
    objects = build_objects()
    _Kibana.answer = (200, {"success": True, "successCount": len(objects)})
    body = import_objects(KibanaSettings(url=kibana_server, space="listening", api_key="s3cret"), objects)
    assert body["successCount"] == len(objects)
    (req,) = _Kibana.received
    assert req["path"] == "/s/listening/api/saved_objects/_import?overwrite=true"
    assert req["xsrf"] and req["auth"] == "ApiKey s3cret"
    sent = [json.loads(line) for line in req["parts"]["file"].decode().splitlines()]
    assert [(o["type"], o["id"]) for o in sent] == [(o["type"], o["id"]) for o in objects]


def test_import_reports_partial_failures_and_bad_credentials(kibana_server):
    _Kibana.answer = (200, {"success": False, "successCount": 13, "errors": [
        {"type": "lens", "id": "stimmung-topics", "error": {"type": "missing_references"}}]})
    with pytest.raises(KibanaError, match=f"13 of {len(build_objects())}.*stimmung-topics: missing_references"):
        import_objects(KibanaSettings(url=kibana_server), build_objects())
    _Kibana.answer = (401, {"message": "unauthorized"})
    with pytest.raises(KibanaError, match="refused the credentials"):
        import_objects(KibanaSettings(url=kibana_server, username="u", password="p"), build_objects())
    with pytest.raises(KibanaError, match="cannot reach Kibana"):
        import_objects(KibanaSettings(url="http://127.0.0.1:9"), build_objects())
