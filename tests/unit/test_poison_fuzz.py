"""Fuzzing the import's and the webhook's input handling (issue #20 item 2): whatever a line or a
body holds, each becomes a mention or a rejection with a reason — never an exception that stops
the import or answers 500, never a lost line. Deterministic (derandomized) and modest in size."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from stimmung.config import ImportSettings
from stimmung.connectors.fileimport.client import read_rows
from stimmung.connectors.fileimport.source import RowError, row_to_mention
from stimmung.connectors.webhook.mapping import from_generic, from_meta
from stimmung.schemas.mention import RawMention

FUZZ = settings(max_examples=150, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
COLUMNS = ImportSettings().columns

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)
# a record that looks like an export row: the mapped columns with values of any JSON type
records = st.fixed_dictionaries({}, optional={column: json_values for column in COLUMNS.values()})
# lines as a file holds them: random bytes (invalid UTF-8, NUL, control characters) and near-valid JSON
lines = st.binary(max_size=120).filter(lambda b: b"\n" not in b and b"\r" not in b) | records.map(
    lambda r: json.dumps(r, allow_nan=True).encode())


@FUZZ
@given(records)
def test_any_record_becomes_a_mention_or_a_row_error(record):
    try:
        mention = row_to_mention(record, COLUMNS, "import")
    except (RowError, ValidationError) as err:
        assert str(err)  # a reason the rejects file and the dead letter carry
        return
    assert isinstance(mention, RawMention) and mention.text and mention.native_id
    json.loads(mention.model_dump_json())  # what is published is JSON (no NaN, no repr of objects)


@FUZZ
@given(st.lists(lines, min_size=1, max_size=12), st.sampled_from(["jsonl", "csv", "tsv"]))
def test_every_line_of_a_file_is_read_as_a_record_or_an_error_none_lost(tmp_path_factory, body, fmt):
    path: Path = tmp_path_factory.mktemp("fuzz") / f"export.{fmt}"
    if fmt == "jsonl":
        path.write_bytes(b"\n".join(body) + b"\n")
        expected = sum(1 for line in body if line.strip())  # blank lines are skipped by design
    else:
        delimiter = b"," if fmt == "csv" else b"\t"
        header = delimiter.join([b"id", b"text", b"created_at"])
        # each fuzzed line is one field: quote it so the row count is known
        cells = [b'"' + line.replace(b'"', b'""') + b'"' for line in body]
        path.write_bytes(header + b"\n" + b"\n".join(c + delimiter + b'"x"' + delimiter + b'"2026-01-01"' for c in cells) + b"\n")
        expected = len(body)
    rows = list(read_rows(path, fmt, "," if fmt == "csv" else "\t"))
    assert len(rows) == expected
    for row in rows:
        assert (row.record is None) == (row.error is not None), row  # either read or rejected with a reason
        if row.record is not None:
            try:
                row_to_mention(row.record, COLUMNS, "import")
            except (RowError, ValidationError):
                pass


@FUZZ
@given(json_values)
def test_any_webhook_body_maps_to_mentions_or_reasons(payload):
    for mapper in (from_meta, from_generic):
        for item in mapper(payload):
            if isinstance(item, RawMention):
                continue
            reason, _ = item
            assert isinstance(reason, str) and reason
