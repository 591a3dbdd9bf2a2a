"""Kibana saved objects for analysts (data views, saved searches, Lens charts, one dashboard), and
their import through Kibana's saved-objects API.

The objects are built here, in code, so that the field names they use can be checked against the
index mappings (tests/unit/test_kibana.py) and the index names follow the settings at import time.
``deploy/kibana/stimmung.ndjson`` is the same set for the default names, for people who import by
hand (Stack Management -> Saved objects -> Import); a test keeps it current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import httpx

from stimmung.config import KibanaSettings, Settings, read_secret

MENTIONS_VIEW = "stimmung-mentions"  # data view ids are fixed: links and panels refer to them
ALERTS_VIEW = "stimmung-alerts"
CASES_VIEW = "stimmung-cases"
CORRECTIONS_VIEW = "stimmung-corrections"
DASHBOARD_ID = "stimmung-overview"
NDJSON_PATH = Path(__file__).resolve().parent.parent / "deploy" / "kibana" / "stimmung.ndjson"
_VERSIONS = {"coreMigrationVersion": "8.8.0"}
_TYPE_VERSIONS = {"index-pattern": "8.0.0", "search": "8.0.0", "lens": "8.9.0", "dashboard": "8.9.0"}


def _obj(type_: str, id_: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": type_, "id": id_, "attributes": attributes, "references": references,
            "managed": False, **_VERSIONS, "typeMigrationVersion": _TYPE_VERSIONS[type_]}


def data_view(id_: str, title: str, name: str, time_field: str = "@timestamp") -> dict[str, Any]:
    return _obj("index-pattern", id_, {"title": title, "name": name, "timeFieldName": time_field,
                                       "fields": "[]", "fieldFormatMap": "{}", "runtimeFieldMap": "{}"}, [])


def saved_search(id_: str, title: str, description: str, kql: str, columns: list[str],
                 view: str = MENTIONS_VIEW, sort: list[list[str]] | None = None) -> dict[str, Any]:
    source = {"query": {"query": kql, "language": "kuery"}, "filter": [],
              "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    return _obj("search", id_, {
        "title": title, "description": description, "columns": columns,
        "sort": sort or [["@timestamp", "desc"]], "grid": {}, "hideChart": False,
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source)},
    }, [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": view}])


# ---- Lens columns ---------------------------------------------------------------------------------

def _count(label: str = "Mentions") -> dict[str, Any]:
    return {"label": label, "customLabel": True, "dataType": "number", "operationType": "count",
            "isBucketed": False, "scale": "ratio", "sourceField": "___records___", "params": {"emptyAsNull": True}}


def _metric(op: str, field: str, label: str) -> dict[str, Any]:
    return {"label": label, "customLabel": True, "dataType": "number", "operationType": op, "isBucketed": False,
            "scale": "ratio", "sourceField": field, "params": {"emptyAsNull": True}}


def _histogram(field: str = "@timestamp") -> dict[str, Any]:
    return {"label": field, "dataType": "date", "operationType": "date_histogram", "sourceField": field,
            "isBucketed": True, "scale": "interval",
            "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False}}


def _terms(field: str, size: int, order_by: str, label: str) -> dict[str, Any]:
    return {"label": label, "customLabel": True, "dataType": "string", "operationType": "terms",
            "sourceField": field, "isBucketed": True, "scale": "ordinal",
            "params": {"size": size, "orderBy": {"type": "column", "columnId": order_by}, "orderDirection": "desc",
                       "otherBucket": True, "missingBucket": False, "parentFormat": {"id": "terms"}}}


def lens(id_: str, title: str, vis_type: str, columns: dict[str, dict[str, Any]], visualization: dict[str, Any],
         view: str = MENTIONS_VIEW, kql: str = "") -> dict[str, Any]:
    layer = "layer1"
    state = {
        "datasourceStates": {"formBased": {"layers": {layer: {
            "columns": columns, "columnOrder": list(columns), "incompleteColumns": {}}}}},
        "visualization": {**visualization, **({"layerId": layer} if "layers" not in visualization else {})},
        "query": {"query": kql, "language": "kuery"}, "filters": [],
        "internalReferences": [], "adHocDataViews": {},
    }
    return _obj("lens", id_, {"title": title, "description": "", "visualizationType": vis_type, "state": state},
                [{"type": "index-pattern", "id": view, "name": f"indexpattern-datasource-layer-{layer}"}])


def _xy(series: str, x: str, y: str, split: str | None = None) -> dict[str, Any]:
    layer = {"layerId": "layer1", "layerType": "data", "seriesType": series, "xAccessor": x, "accessors": [y]}
    if split:
        layer["splitAccessor"] = split
    return {"legend": {"isVisible": True, "position": "right"}, "valueLabels": "hide",
            "preferredSeriesType": series, "layers": [layer]}


def _pie(group: str, metric: str) -> dict[str, Any]:
    return {"shape": "donut", "layers": [{"layerId": "layer1", "layerType": "data", "primaryGroups": [group],
                                          "metrics": [metric], "numberDisplay": "percent", "categoryDisplay": "default",
                                          "legendDisplay": "default", "nestedLegend": False}]}


def charts() -> list[dict[str, Any]]:
    return [
        lens("stimmung-volume-by-sentiment", "Mentions over time by sentiment", "lnsXY",
             {"x": _histogram(), "y": _count(), "s": _terms("sentiment.label", 3, "y", "Sentiment")},
             _xy("bar_stacked", "x", "y", "s")),
        lens("stimmung-negative-by-brand", "Negative mentions over time by brand", "lnsXY",
             {"x": _histogram(), "y": _count("Negative mentions"), "s": _terms("brand_names", 10, "y", "Brand")},
             _xy("line", "x", "y", "s"), kql='sentiment.label : "negative"'),
        lens("stimmung-topics", "Topics", "lnsXY",
             {"t": _terms("topic_labels", 15, "y", "Topic"), "y": _count(), "s": _terms("sentiment.label", 3, "y", "Sentiment")},
             _xy("bar_horizontal_stacked", "t", "y", "s")),
        lens("stimmung-languages", "Languages", "lnsPie",
             {"g": _terms("language", 10, "y", "Language"), "y": _count()}, _pie("g", "y")),
        lens("stimmung-platforms", "Platforms", "lnsPie",
             {"g": _terms("platform", 10, "y", "Platform"), "y": _count()}, _pie("g", "y")),
        lens("stimmung-top-authors", "Top authors by reach (pseudonymous)", "lnsDatatable",
             {"a": _terms("author.pseudonym", 20, "r", "Author (pseudonym)"),
              "r": _metric("max", "author.follower_count", "Followers"),
              "y": _count(), "l": _metric("sum", "engagement.likes", "Likes"),
              "sh": _metric("sum", "engagement.shares", "Shares")},
             {"layerType": "data", "columns": [{"columnId": c} for c in ("a", "r", "y", "l", "sh")]}),
        lens("stimmung-alert-timeline", "Complaint-spike alerts", "lnsXY",
             {"x": _histogram(), "y": _count("Alerts"), "s": _terms("severity", 3, "y", "Severity")},
             _xy("bar_stacked", "x", "y", "s"), view=ALERTS_VIEW, kql='status : "firing"'),
        lens("stimmung-case-response-times", "Case response times by queue (seconds)", "lnsXY",
             {"q": _terms("queue", 10, "f", "Queue"), "f": _metric("average", "first_response_s", "First response"),
              "r": _metric("average", "resolution_s", "Resolution")},
             {**_xy("bar", "q", "f"), "layers": [{"layerId": "layer1", "layerType": "data", "seriesType": "bar",
                                                   "xAccessor": "q", "accessors": ["f", "r"]}]}, view=CASES_VIEW),
        lens("stimmung-cases-by-state", "Cases by queue and state", "lnsXY",
             {"q": _terms("queue", 10, "y", "Queue"), "y": _count("Cases"), "s": _terms("state", 3, "y", "State")},
             _xy("bar_stacked", "q", "y", "s"), view=CASES_VIEW),
    ]


MENTION_COLUMNS = ["text", "brand_names", "sentiment.label", "topic_labels", "language", "platform", "author.pseudonym"]


def searches() -> list[dict[str, Any]]:
    return [
        # The same mentions the default alert series counts (issue #18): the complaint head's
        # decision; documents enriched before the heads existed fall back to the former rule.
        saved_search("stimmung-complaints", "Complaints",
                     "Mentions the complaint model marks as complaints (what complaint-spike alerts count); older "
                     "mentions without that field: negative ones with a complaint or service topic.",
                     'complaint.label : "complaint" or (not complaint.label : * and sentiment.label : "negative" and '
                     'topic_labels : ("complaint" or "delivery" or "pricing_billing" or "product_quality" or '
                     '"customer_service" or "app_website" or "outage" or "churn_threat"))',
                     [*MENTION_COLUMNS, "complaint.probability", "brand_sentiment.label"]),
        saved_search("stimmung-negative", "Negative mentions", "Every mention the model reads as negative.",
                     'sentiment.label : "negative"', MENTION_COLUMNS),
        saved_search("stimmung-by-brand", "Mentions per brand",
                     "Mentions that matched a brand query, sorted by brand; filter brand_names for one brand.",
                     "brand_names : *", ["brand_names", *[c for c in MENTION_COLUMNS if c != "brand_names"]],
                     sort=[["brand_names", "asc"], ["@timestamp", "desc"]]),
        saved_search("stimmung-alerts-list", "Alerts", "Complaint-spike alerts, newest first.", "",
                     ["status", "severity", "brand", "topic", "observed", "expected", "p_value"], view=ALERTS_VIEW),
        saved_search("stimmung-opinion-leaders", "Opinion leaders",
                     "Mentions by authors with an influence score of 60 or more (docs/influence.md), most influential first.",
                     "author.influence >= 60", ["author.influence", *MENTION_COLUMNS],
                     sort=[["author.influence", "desc"], ["@timestamp", "desc"]]),
        saved_search("stimmung-open-cases", "Open cases", "Cases waiting for or in work, by priority.",
                     'state : ("open" or "in_progress")',
                     ["priority", "queue", "state", "assignee", "brand", "title", "sla_breached", "mention_count"],
                     view=CASES_VIEW, sort=[["priority", "asc"], ["created_at", "asc"]]),
        saved_search("stimmung-corrections-list", "Corrections",
                     "Analysts' corrections of mentions (stimmung correct), newest first: what the model said, "
                     "what the analyst set, who and why. Filter mention_id to join with a mention.", "",
                     ["mention_id", "field", "label", "model_value", "value", "corrected_by", "revision", "note",
                      "mention_brands"], view=CORRECTIONS_VIEW),
    ]


def dashboard(panels: list[tuple[str, str, tuple[int, int, int, int]]]) -> dict[str, Any]:
    """panels: (saved object type, id, (x, y, w, h)) on Kibana's 48-column grid."""
    panel_json, references = [], []
    for n, (type_, id_, (x, y, w, h)) in enumerate(panels, start=1):
        panel_json.append({"version": "8.9.0", "type": type_, "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(n)},
                           "panelIndex": str(n), "embeddableConfig": {"enhancements": {}}, "panelRefName": f"panel_{n}"})
        references.append({"name": f"panel_{n}", "type": type_, "id": id_})
    return _obj("dashboard", DASHBOARD_ID, {
        "title": "Stimmung — social listening overview",
        "description": "Volume by sentiment, negative mentions per brand, topics, languages, platforms, "
                       "top authors by reach, alerts, cases with their response times, and the complaints queue.",
        "panelsJSON": json.dumps(panel_json),
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": True, "syncCursor": True,
                                   "syncTooltips": False, "hidePanelTitles": False}),
        "timeRestore": True, "timeFrom": "now-30d", "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 60000},
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"}, "filter": []})},
    }, references)


def build_objects(mentions_index: str = "stimmung-mentions", alerts_index: str = "stimmung-alerts",
                  cases_index: str = "stimmung-cases", corrections_index: str = "stimmung-corrections") -> list[dict[str, Any]]:
    views = [data_view(MENTIONS_VIEW, mentions_index, "Stimmung mentions"),
             data_view(ALERTS_VIEW, alerts_index, "Stimmung alerts"),
             data_view(CASES_VIEW, cases_index, "Stimmung cases", time_field="created_at"),
             data_view(CORRECTIONS_VIEW, corrections_index, "Stimmung corrections")]
    layout = [
        ("lens", "stimmung-volume-by-sentiment", (0, 0, 32, 12)),
        ("lens", "stimmung-languages", (32, 0, 8, 12)),
        ("lens", "stimmung-platforms", (40, 0, 8, 12)),
        ("lens", "stimmung-negative-by-brand", (0, 12, 24, 12)),
        ("lens", "stimmung-topics", (24, 12, 24, 12)),
        ("lens", "stimmung-top-authors", (0, 24, 24, 14)),
        ("lens", "stimmung-alert-timeline", (24, 24, 24, 14)),
        ("lens", "stimmung-cases-by-state", (0, 38, 24, 12)),
        ("lens", "stimmung-case-response-times", (24, 38, 24, 12)),
        ("search", "stimmung-complaints", (0, 50, 48, 18)),
    ]
    return [*views, *searches(), *charts(), dashboard(layout)]


def to_ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, ensure_ascii=False, sort_keys=True) + "\n" for o in objects)


def objects_for(settings: Settings) -> list[dict[str, Any]]:
    return build_objects(settings.elasticsearch.mentions_index, settings.elasticsearch.alerts_index,
                         settings.elasticsearch.cases_index, settings.elasticsearch.corrections_index)


# ---- what the objects use (for tests and `stimmung kibana check`) ------------------------------------

def fields_used(obj: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(data view id, field) for every field an object reads."""
    refs = {r["name"]: r["id"] for r in obj["references"]}
    attrs = obj["attributes"]
    if obj["type"] == "lens":
        view = refs["indexpattern-datasource-layer-layer1"]
        for layer in attrs["state"]["datasourceStates"]["formBased"]["layers"].values():
            for column in layer["columns"].values():
                if column.get("sourceField") not in (None, "___records___"):
                    yield view, column["sourceField"]
        yield from ((view, f) for f in _kql_fields(attrs["state"]["query"]["query"]))
    elif obj["type"] == "search":
        view = refs["kibanaSavedObjectMeta.searchSourceJSON.index"]
        yield from ((view, c) for c in attrs["columns"])
        yield from ((view, s[0]) for s in attrs["sort"])
        source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
        yield from ((view, f) for f in _kql_fields(source["query"]["query"]))
    elif obj["type"] == "index-pattern":
        yield obj["id"], attrs["timeFieldName"]


def _kql_fields(kql: str) -> list[str]:
    import re

    return re.findall(r"([\w.@]+)\s*(?::|>=|<=|>|<)", kql)


# ---- import ------------------------------------------------------------------------------------------

class KibanaError(RuntimeError):
    pass


def import_objects(settings: KibanaSettings, objects: list[dict[str, Any]], overwrite: bool = True,
                   timeout_s: float = 60.0) -> dict[str, Any]:
    """POST the objects to ``/api/saved_objects/_import`` (multipart NDJSON); raise on any error."""
    if not settings.url:
        raise KibanaError("no Kibana URL: pass --url or set kibana.url (STIMMUNG_KIBANA__URL)")
    headers = {"kbn-xsrf": "stimmung"}
    auth = None
    api_key = read_secret(settings.api_key, settings.api_key_file, "kibana.api_key")
    password = read_secret(settings.password, settings.password_file, "kibana.password")
    if api_key:
        headers["Authorization"] = f"ApiKey {api_key}"
    elif settings.username and password:
        auth = (settings.username, password)
    base = settings.url + (f"/s/{settings.space}" if settings.space else "")
    files = {"file": ("stimmung.ndjson", to_ndjson(objects).encode("utf-8"), "application/ndjson")}
    try:
        with httpx.Client(verify=str(settings.ca_certs) if settings.ca_certs else True, timeout=timeout_s) as http:
            resp = http.post(f"{base}/api/saved_objects/_import", params={"overwrite": str(overwrite).lower()},
                             headers=headers, files=files, auth=auth or httpx.USE_CLIENT_DEFAULT)
    except httpx.HTTPError as err:
        raise KibanaError(f"cannot reach Kibana at {settings.url}: {err}") from None
    if resp.status_code in (401, 403):
        raise KibanaError(f"Kibana refused the credentials ({resp.status_code}): set kibana.api_key or username/password")
    if resp.status_code != 200:
        raise KibanaError(f"Kibana answered {resp.status_code}: {resp.text[:500]}")
    body = resp.json()
    if not body.get("success"):
        problems = "; ".join(f"{e.get('type')}/{e.get('id')}: {e.get('error', {}).get('type')}"
                             for e in body.get("errors", []))
        raise KibanaError(f"Kibana imported {body.get('successCount', 0)} of {len(objects)} objects: {problems}")
    return body
