import asyncio
import gzip
import json
from datetime import datetime, timezone

import pytest

from stimmung.config import ImportSettings
from stimmung.connectors.fileimport import FileImportSource, ImportFileError, read_rows
from stimmung.connectors.fileimport.source import parse_timestamp

COLUMNS = ImportSettings().columns


def fetch_all(source, cursor=None):
    async def go():
        return [item async for item in source.fetch(cursor)]
    return asyncio.run(go())


def test_csv_rows_become_mentions_and_bad_rows_are_rejected_with_reasons(tmp_path):
    f = tmp_path / "export.csv"
    f.write_text(
        "id,text,created_at,author,followers,likes,lang\n"
        "1,Zug verspätet,2026-11-20T08:00:00+01:00,@jana,12,3,de\n"
        "2,,2026-11-20T08:00:00Z,bob,,,\n"            # missing text
        "3,Good service,yesterday,carl,,,en\n"        # bad date
        "4,Too,many,fields,here,x,y,z\n"              # wrong field count
        "5,Paket fehlt,1763625600,dora,-1,,\n"        # negative followers
        "6,Paket da,1763625600000,,,,\n",             # ms epoch, no author
        encoding="utf-8",
    )
    items = fetch_all(FileImportSource(f, COLUMNS, "crm"))
    good = [i.mention for i in items if i.mention]
    bad = {i.rejected.position: i.rejected for i in items if i.rejected}
    assert [m.native_id for m in good] == ["1", "6"]
    first = good[0]
    assert first.platform == "crm" and first.author.handle == "@jana" and first.author.follower_count == 12
    assert first.engagement.likes == 3 and first.language_hint == "de"
    assert first.created_at == datetime(2026, 11, 20, 7, tzinfo=timezone.utc)
    assert good[1].author is None
    assert good[1].created_at == datetime.fromtimestamp(1763625600, tz=timezone.utc)
    assert "missing text" in bad[2].reason
    assert "not ISO 8601" in bad[3].reason
    assert "fields" in bad[4].reason and bad[4].error_type == "csv"
    assert "negative" in bad[5].reason
    assert items[-1].cursor["position"] == 6


def test_jsonl_with_nested_columns_and_broken_lines(tmp_path):
    f = tmp_path / "x.jsonl.gz"
    lines = [
        json.dumps({"post": {"id": "a1", "body": "Hello 👋"}, "user": {"name": "eve"}, "ts": "2026-11-20T10:00:00Z"}),
        "{not json",
        "[1, 2]",
        json.dumps({"post": {"id": "a2", "body": "Tschüss"}, "ts": "2026-11-20T11:00:00"}),
    ]
    with gzip.open(f, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    cols = {"native_id": "post.id", "text": "post.body", "created_at": "ts", "author_handle": "user.name"}
    items = fetch_all(FileImportSource(f, cols, "shop"))
    assert [i.mention.native_id for i in items if i.mention] == ["a1", "a2"]
    rejected = [i.rejected for i in items if i.rejected]
    assert [r.position for r in rejected] == [2, 3]
    assert rejected[0].error_type == "json" and "invalid JSON" in rejected[0].reason
    assert "expected a JSON object" in rejected[1].reason
    m = [i.mention for i in items if i.mention][1]
    assert m.created_at.tzinfo is not None  # naive timestamps are taken as UTC


def test_resume_skips_rows_of_the_same_file_only(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("id,text,created_at\n1,a,2026-01-01T00:00:00Z\n2,b,2026-01-01T00:00:00Z\n3,c,2026-01-01T00:00:00Z\n")
    src = FileImportSource(f, COLUMNS)
    items = fetch_all(src)
    resumed = fetch_all(src, items[1].cursor)
    assert [i.mention.native_id for i in resumed] == ["3"]
    stale = dict(items[1].cursor, file="0:0")
    assert len(fetch_all(src, stale)) == 3


def test_file_level_errors_are_clear(tmp_path):
    with pytest.raises(ImportFileError, match="no such file"):
        list(read_rows(tmp_path / "none.csv"))
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(ImportFileError, match="--format"):
        list(read_rows(odd))
    dup = tmp_path / "dup.csv"
    dup.write_text("id,id\n1,2\n")
    with pytest.raises(ImportFileError, match="repeated"):
        list(read_rows(dup))


def test_timestamps():
    assert parse_timestamp("2026-11-20T10:00:00Z") == datetime(2026, 11, 20, 10, tzinfo=timezone.utc)
    assert parse_timestamp(1763625600) == parse_timestamp("1763625600000")


def test_another_mapping_does_not_resume_behind_rows_it_never_published(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("post_id,message,date\n1,a,2026-01-01T00:00:00Z\n2,b,2026-01-01T00:00:00Z\n")
    wrong = FileImportSource(f, {**COLUMNS, "native_id": "post_id", "text": "msg", "created_at": "date"})
    rejected = fetch_all(wrong)
    assert all(i.rejected for i in rejected)
    right = FileImportSource(f, {**COLUMNS, "native_id": "post_id", "text": "message", "created_at": "date"})
    assert [i.mention.native_id for i in fetch_all(right, rejected[-1].cursor)] == ["1", "2"]


def test_the_header_is_checked_against_the_mapping_and_the_delimiter_sniffed(tmp_path):
    f = tmp_path / "semicolons.csv"
    f.write_text("post_id;message;date\n1;Nordbahn wieder zu spät;2026-01-01T00:00:00Z\n")
    columns = {**COLUMNS, "native_id": "post_id", "text": "message", "created_at": "date"}
    src = FileImportSource(f, columns, explicit=frozenset({"native_id", "text", "created_at"}))
    assert src.check_header() == ["post_id", "message", "date"] and src.delimiter == ";"
    assert [i.mention.text for i in fetch_all(src)] == ["Nordbahn wieder zu spät"]
    typo = FileImportSource(f, {**columns, "text": "mesage"}, explicit=frozenset({"text"}))
    with pytest.raises(ImportFileError) as err:
        typo.check_header()
    assert "text -> column 'mesage' (did you mean 'message'?)" in str(err.value)
    assert "'post_id', 'message', 'date'" in str(err.value)


def test_a_cp1252_export_names_the_line_and_imports_with_encoding(tmp_path):
    f = tmp_path / "excel.csv"
    f.write_bytes("id,text,created_at\n1,Verspätung,2026-01-01T00:00:00Z\n2,fine,2026-01-01T00:00:00Z\n".encode("cp1252"))
    items = fetch_all(FileImportSource(f, COLUMNS))
    assert items[0].rejected and "row 1 has bytes that are not valid utf-8-sig" in items[0].rejected.reason
    assert "--encoding cp1252" in items[0].rejected.reason
    assert items[1].mention.native_id == "2", "the rest of the file is imported"
    fixed = fetch_all(FileImportSource(f, COLUMNS, encoding="cp1252"))
    assert [i.mention.text for i in fixed] == ["Verspätung", "fine"]


def test_invalid_utf8_in_jsonl_is_one_rejected_line_on_the_right_line(tmp_path):
    f = tmp_path / "e.jsonl"
    good = json.dumps({"id": "1", "text": "ok", "created_at": "2026-01-01T00:00:00Z"}).encode()
    f.write_bytes(good + b"\n" + b'{"id": "2", "text": "\xff\xfe", "created_at": "2026-01-01T00:00:00Z"}\n'
                  + good.replace(b'"1"', b'"3"') + b"\n")
    items = fetch_all(FileImportSource(f, COLUMNS))
    assert [i.mention.native_id for i in items if i.mention] == ["1", "3"]
    (bad,) = [i.rejected for i in items if i.rejected]
    assert "line 2 has bytes" in bad.reason


@pytest.mark.parametrize("row, reason", [
    ({"id": "1", "text": "ok", "created_at": 10**30}, "out of range"),
    ({"id": "2", "text": "ok", "created_at": "2026-01-01T00:00:00Z", "likes": float("inf")}, "not a finite number"),
    ({"id": "3", "text": "ok", "created_at": "2026-01-01T00:00:00Z", "likes": float("nan")}, "not a finite number"),
    ({"id": "4", "text": {"body": "hidden"}, "created_at": "2026-01-01T00:00:00Z"}, "expected text"),
    ({"id": "5", "text": "ok", "created_at": "2026-01-01T00:00:00Z", "author": {"name": "x"}}, "expected text"),
])
def test_poison_values_reject_their_row_and_the_import_goes_on(tmp_path, row, reason):
    f = tmp_path / "e.jsonl"
    good = {"id": "ok", "text": "fine", "created_at": "2026-01-01T00:00:00Z"}
    # json.dumps writes Infinity/NaN as the bare tokens exports contain; json.loads reads them back
    f.write_text(json.dumps(row) + "\n" + json.dumps(good) + "\n")
    items = fetch_all(FileImportSource(f, {**COLUMNS, "native_id": "id", "author_handle": "author"}))
    assert items[0].rejected and reason in items[0].rejected.reason
    assert items[1].mention.native_id == "ok"
