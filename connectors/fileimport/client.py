"""Reads CSV/TSV and JSON Lines exports row by row (optionally gzip-compressed).

Yields ``Row`` objects: the parsed record, or the parse error, with its 1-based position
(CSV: data row number after the header; JSONL: line number) and the raw text for dead letters.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

Format = Literal["csv", "tsv", "jsonl"]

_SUFFIXES: dict[str, Format] = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


class ImportFileError(Exception):
    """The file as a whole cannot be read (missing, wrong format, no header...)."""


@dataclass(frozen=True, slots=True)
class Row:
    position: int
    raw: str
    record: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None


def detect_format(path: Path) -> Format:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise ImportFileError(f"{path}: cannot tell the format from the name; pass --format csv|tsv|jsonl")


DEFAULT_ENCODING = "utf-8-sig"  # spreadsheet exports often start with a byte-order mark
SNIFFED_DELIMITERS = ",;\t|"


def _open_text(path: Path, encoding: str = DEFAULT_ENCODING) -> io.TextIOBase:
    # surrogateescape: a byte the encoding cannot decode becomes a marker in that row only, so
    # the row is dead-lettered with its line and the rest of the file is imported.
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, errors="surrogateescape", newline="")
    return open(path, "r", encoding=encoding, errors="surrogateescape", newline="")


def _undecodable(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def _decode_hint(encoding: str) -> str:
    hint = "" if encoding.lower().replace("-", "") not in ("utf8sig", "utf8") else \
        " (an export from Excel on Windows? try --encoding cp1252)"
    return f"bytes that are not valid {encoding}{hint}"


def check_encoding(encoding: str) -> None:
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ImportFileError(f"--encoding {encoding!r}: unknown encoding (e.g. utf-8, cp1252, latin-1)") from None


def read_header(path: Path, fmt: Format | None = None, delimiter: str | None = None,
                encoding: str = DEFAULT_ENCODING) -> tuple[list[str], str]:
    """The CSV/TSV header and the delimiter to read the file with: the given one, or for CSV
    one sniffed from the header line when it has a single column (``;``-separated exports)."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    if fmt == "tsv":
        delimiter = delimiter or "\t"
    check_encoding(encoding)
    with _open_text(path, encoding) as fh:
        first = fh.readline()
    if not first.strip():
        raise ImportFileError(f"{path}: empty file (no header row)")
    if _undecodable(first):
        raise ImportFileError(f"{path}: the header row has {_decode_hint(encoding)}")
    chosen = delimiter or ","
    if delimiter is None and fmt == "csv" and "," not in first:
        try:
            chosen = csv.Sniffer().sniff(first, delimiters=SNIFFED_DELIMITERS).delimiter
        except csv.Error:
            chosen = ","
    header = next(csv.reader([first], delimiter=chosen))
    return [h.strip() for h in header], chosen


def read_rows(path: Path, fmt: Format | None = None, delimiter: str = ",",
              encoding: str = DEFAULT_ENCODING) -> Iterator[Row]:
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    check_encoding(encoding)
    if fmt == "jsonl":
        yield from _read_jsonl(path, encoding)
    else:
        yield from _read_csv(path, "\t" if fmt == "tsv" else delimiter, encoding)


def _read_jsonl(path: Path, encoding: str = DEFAULT_ENCODING) -> Iterator[Row]:
    with _open_text(path, encoding) as fh:
        number = 0
        while True:
            number += 1
            line = fh.readline()
            if not line:
                return
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            if _undecodable(text):
                yield Row(number, _printable(text, encoding), error=f"line {number} has {_decode_hint(encoding)}",
                          error_type="encoding")
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                yield Row(number, text, error=f"invalid JSON: {err.msg} at column {err.colno}", error_type="json")
                continue
            if not isinstance(record, dict):
                yield Row(number, text, error=f"expected a JSON object, got {type(record).__name__}", error_type="json")
                continue
            yield Row(number, text, record=record)


def _printable(text: str, encoding: str) -> str:
    """The row as it was, for the dead letter: undecodable bytes shown as replacement characters."""
    return text.encode(encoding, "surrogateescape").decode(encoding, "replace")


def _read_csv(path: Path, delimiter: str, encoding: str = DEFAULT_ENCODING) -> Iterator[Row]:
    with _open_text(path, encoding) as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError(f"{path}: empty file (no header row)") from None
        except csv.Error as err:
            raise ImportFileError(f"{path}: unreadable header: {err}") from None
        header = [h.strip() for h in header]
        if any(_undecodable(h) for h in header):
            raise ImportFileError(f"{path}: the header row has {_decode_hint(encoding)}")
        if len(set(header)) != len(header) or not all(header):
            raise ImportFileError(f"{path}: header has blank or repeated column names: {header}")
        number = 0
        while True:
            number += 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                yield Row(number, "", error=f"CSV syntax error: {err}", error_type="csv")
                continue
            raw = delimiter.join(values)
            if not any(v.strip() for v in values):
                continue
            if _undecodable(raw):
                yield Row(number, _printable(raw, encoding), error=f"row {number} has {_decode_hint(encoding)}",
                          error_type="encoding")
                continue
            if len(values) != len(header):
                yield Row(
                    number, raw,
                    error=f"row has {len(values)} fields, header has {len(header)}", error_type="csv",
                )
                continue
            yield Row(number, raw, record=dict(zip(header, values, strict=False)))
