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


def _open_text(path: Path) -> io.TextIOBase:
    # utf-8-sig: spreadsheet exports often start with a byte-order mark.
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="strict", newline="")
    return open(path, "r", encoding="utf-8-sig", errors="strict", newline="")


def read_rows(path: Path, fmt: Format | None = None, delimiter: str = ",") -> Iterator[Row]:
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    if fmt == "jsonl":
        yield from _read_jsonl(path)
    else:
        yield from _read_csv(path, "\t" if fmt == "tsv" else delimiter)


def _read_jsonl(path: Path) -> Iterator[Row]:
    with _open_text(path) as fh:
        number = 0
        while True:
            number += 1
            try:
                line = fh.readline()
            except UnicodeDecodeError as err:
                raise ImportFileError(f"{path}: line {number} is not UTF-8 ({err.reason})") from None
            if not line:
                return
            text = line.rstrip("\r\n")
            if not text.strip():
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


def _read_csv(path: Path, delimiter: str) -> Iterator[Row]:
    with _open_text(path) as fh:
        reader = csv.reader(fh, delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError(f"{path}: empty file (no header row)") from None
        except (csv.Error, UnicodeDecodeError) as err:
            raise ImportFileError(f"{path}: unreadable header: {err}") from None
        header = [h.strip() for h in header]
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
            except UnicodeDecodeError as err:
                raise ImportFileError(f"{path}: row {number} is not UTF-8 ({err.reason})") from None
            raw = delimiter.join(values)
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                yield Row(
                    number, raw,
                    error=f"row has {len(values)} fields, header has {len(header)}", error_type="csv",
                )
                continue
            yield Row(number, raw, record=dict(zip(header, values, strict=False)))
