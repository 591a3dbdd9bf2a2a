"""Maps rows of a CSV/JSONL export to ``RawMention`` using the configured column mapping."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

from pydantic import ValidationError

from stimmung.connectors.base import Fetched, Rejected, Source
from stimmung.connectors.fileimport.client import DEFAULT_ENCODING, Format, ImportFileError, read_header, read_rows
from stimmung.schemas.deadletter import DeadLetter
from stimmung.schemas.mention import Author, Engagement, RawMention

# RawMention fields a column can feed (flat names; the source assembles the nested models).
MAPPABLE_FIELDS = frozenset({
    "native_id", "text", "created_at", "url", "platform", "language_hint", "reply_to_id", "thread_id",
    "author_id", "author_handle", "author_display_name", "author_follower_count",
    "likes", "shares", "replies", "views",
})


class RowError(ValueError):
    pass


def _lookup(record: dict[str, Any], column: str) -> Any:
    """Column value; dotted names reach into nested JSON objects ('user.screen_name')."""
    if column in record:
        return record[column]
    value: Any = record
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 (naive = UTC) or Unix time in seconds or milliseconds."""
    if isinstance(value, bool):
        raise RowError("created_at is a boolean, not a time")
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit()):
        number = float(value)
        if number > 1e11:  # milliseconds
            number /= 1000.0
        try:
            return datetime.fromtimestamp(number, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):  # a huge integer, NaN, infinity: one bad row, not the file
            raise RowError(f"created_at {value!r} is out of range for a Unix time") from None
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise RowError(f"created_at {text!r} is not ISO 8601 or Unix time") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise RowError(f"created_at has unsupported type {type(value).__name__}")


def _count(value: Any, name: str) -> int | None:
    if _blank(value):
        return None
    if isinstance(value, (bool, dict, list)):
        raise RowError(f"{name} is a {type(value).__name__}, not a number")
    try:
        number = int(float(value)) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):  # NaN and Infinity too
        raise RowError(f"{name} {value!r} is not a finite number") from None
    if number < 0:
        raise RowError(f"{name} is negative")
    return number


def _text(value: Any, name: str = "value") -> str | None:
    if _blank(value):
        return None
    if isinstance(value, (dict, list, bool)) or (isinstance(value, float) and value != value):
        # a JSON object or list where text belongs would be indexed as its Python repr
        raise RowError(f"{name} is a JSON {type(value).__name__}, expected text")
    return value.strip() if isinstance(value, str) else str(value)


def row_to_mention(record: dict[str, Any], columns: dict[str, str], default_platform: str) -> RawMention:
    get = {field: _lookup(record, column) for field, column in columns.items()}
    for required in ("native_id", "text", "created_at"):
        if _blank(get.get(required)):
            raise RowError(f"missing {required} (column {columns[required]!r})")
    if not isinstance(get["text"], (str, int, float)) or isinstance(get["text"], bool):
        raise RowError(f"text is a JSON {type(get['text']).__name__}, expected text (column {columns['text']!r})")
    handle, author_id = _text(get.get("author_handle"), "author_handle"), _text(get.get("author_id"), "author_id")
    author = None
    if handle or author_id:
        # author_id (a stable account id: X user id, Bluesky DID) is the key when present; the handle is display.
        author = Author(
            handle=author_id or handle, display_handle=handle if author_id else None,
            display_name=_text(get.get("author_display_name")),
            follower_count=_count(get.get("author_follower_count"), "author_follower_count"),
        )
    engagement = Engagement(
        likes=_count(get.get("likes"), "likes") or 0,
        shares=_count(get.get("shares"), "shares") or 0,
        replies=_count(get.get("replies"), "replies") or 0,
        views=_count(get.get("views"), "views"),
    )
    return RawMention(
        platform=_text(get.get("platform")) or default_platform,
        native_id=_text(get["native_id"]),
        url=_text(get.get("url")),
        text=str(get["text"]),
        language_hint=_text(get.get("language_hint")),
        created_at=parse_timestamp(get["created_at"]),
        reply_to_id=_text(get.get("reply_to_id")),
        thread_id=_text(get.get("thread_id")),
        author=author,
        engagement=engagement,
        raw=record,
    )


class FileImportSource(Source):
    """One CSV/TSV/JSONL file. Cursor = last row position handled, tied to the file's identity."""

    name = "fileimport"

    def __init__(self, path: Path, columns: dict[str, str], default_platform: str = "import",
                 fmt: Format | None = None, delimiter: str | None = None, encoding: str = DEFAULT_ENCODING,
                 explicit: frozenset[str] = frozenset()):
        self.path = Path(path).resolve()
        self.columns = columns
        self.default_platform = default_platform
        self.fmt = fmt
        self.delimiter = delimiter
        self.encoding = encoding
        self.explicit = explicit  # fields the user mapped on the command line: their columns must exist

    def check_header(self) -> list[str]:
        """Before any row is read: the mapped columns exist in a CSV/TSV header (required fields and
        the ones mapped explicitly), with the columns found and close matches in the error; the
        delimiter is sniffed from the header when none was given. Returns the header."""
        import difflib

        from stimmung.connectors.fileimport.client import detect_format

        fmt = self.fmt or detect_format(self.path)
        if fmt == "jsonl":
            return []
        header, self.delimiter = read_header(self.path, fmt, self.delimiter, self.encoding)
        wanted = {"native_id", "text", "created_at"} | set(self.explicit)
        missing = []
        for field in sorted(wanted):
            column = self.columns.get(field)
            if column and column not in header:
                close = difflib.get_close_matches(column, header, n=1, cutoff=0.6)
                missing.append(f"{field} -> column {column!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        if missing:
            shown = ", ".join(repr(h) for h in header[:30])
            raise ImportFileError(f"{self.path.name}: the header has no column for " + "; ".join(missing)
                                  + f". Columns found ({len(header)}, delimiter {self.delimiter!r}): {shown}. "
                                  "Map them with --map FIELD=COLUMN, or give --delimiter")
        return header

    @property
    def checkpoint_key(self) -> str:
        return f"{self.name}:{self.path}"

    def _fingerprint(self) -> str:
        # The file and how it is read: a run with another mapping, format, delimiter or encoding
        # (e.g. after a wrong --map rejected every row) starts from the top instead of resuming
        # behind rows it never published.
        import hashlib
        import json as _json

        st = os.stat(self.path)
        how = _json.dumps([sorted(self.columns.items()), self.fmt, self.delimiter, self.encoding])
        return f"{st.st_size}:{st.st_mtime_ns}:{hashlib.sha256(how.encode()).hexdigest()[:12]}"

    async def fetch(self, cursor: Any | None) -> AsyncIterator[Fetched]:
        fingerprint = self._fingerprint()
        skip_to = 0
        # Resume only into the very same file; a changed file is imported from the top
        # (ids make the repeated rows harmless).
        if isinstance(cursor, dict) and cursor.get("file") == fingerprint:
            skip_to = int(cursor.get("position", 0))
        for n, row in enumerate(read_rows(self.path, self.fmt, self.delimiter or ",", self.encoding)):
            if n % 500 == 0:
                await asyncio.sleep(0)  # let the loop breathe on big files
            if row.position <= skip_to:
                continue
            position = {"file": fingerprint, "position": row.position}
            if row.record is None:
                yield Fetched(rejected=Rejected(row.error or "unreadable", row.error_type or "parse", row.raw, row.position),
                              cursor=position)
                continue
            try:
                mention = row_to_mention(row.record, self.columns, self.default_platform)
            except RowError as err:
                yield Fetched(rejected=Rejected(str(err), "mapping", row.raw, row.position), cursor=position)
                continue
            except ValidationError as err:
                yield Fetched(rejected=Rejected(DeadLetter.describe(err), "validation", row.raw, row.position),
                              cursor=position)
                continue
            yield Fetched(mention=mention, cursor=position)
