"""Readers for the labelled data layouts we train and evaluate on (clear errors on bad files).

* UMSAB: ``DIR/<language>/<split>_text.txt`` and ``<split>_labels.txt`` (0/1/2 =
  negative/neutral/positive), one example per line.
* TweetEval sentiment: the same two files directly in ``DIR``.
* GermEval 2017: a TSV with columns id, text, relevance, sentiment, category, ... (documents with
  several opinions repeat on several rows).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

LABELS = ("negative", "neutral", "positive")


class DatasetError(ValueError):
    pass


def _text_of(path: Path) -> str:
    """The file's text as UTF-8 (a byte-order mark, as Excel writes, is dropped); anything else is a
    DatasetError naming the line of the first byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x}); save the file as UTF-8") from None


def _header(path: Path, reader: csv.DictReader, wanted: Sequence[str], separator: str) -> None:
    if reader.fieldnames is None:
        raise DatasetError(f"{path}: empty file (expected a header line with {separator}-separated columns "
                           f"{', '.join(wanted)})")
    missing = [c for c in wanted if c not in reader.fieldnames]
    if missing:
        raise DatasetError(f"{path}:1: missing column(s) {missing}; header is {reader.fieldnames} "
                           f"(columns must be {separator}-separated)")


@dataclass
class Split:
    texts: list[str]
    labels: list[int]
    languages: list[str]


def _read_pair(text_file: Path, label_file: Path, language: str) -> Split:
    for f in (text_file, label_file):
        if not f.is_file():
            raise DatasetError(f"missing file {f}")
    texts = _text_of(text_file).split("\n")
    labels_raw = _text_of(label_file).split("\n")
    if texts and texts[-1] == "":
        texts.pop()
    if labels_raw and labels_raw[-1] == "":
        labels_raw.pop()
    if len(texts) != len(labels_raw):
        raise DatasetError(f"{text_file} has {len(texts)} lines but {label_file} has {len(labels_raw)}")
    labels = []
    for n, raw in enumerate(labels_raw, 1):
        if raw.strip() not in ("0", "1", "2"):
            raise DatasetError(f"{label_file}:{n}: label {raw!r} is not 0, 1 or 2")
        labels.append(int(raw))
    return Split(texts, labels, [language] * len(texts))


def read_umsab(directory: Path, split: str, languages: list[str] | None = None) -> Split:
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"{directory} is not a directory")
    langs = languages or sorted(p.name for p in directory.iterdir() if (p / f"{split}_text.txt").is_file())
    if not langs:
        raise DatasetError(f"{directory}: no <language>/{split}_text.txt found")
    out = Split([], [], [])
    for lang in langs:
        part = _read_pair(directory / lang / f"{split}_text.txt", directory / lang / f"{split}_labels.txt", lang)
        out.texts += part.texts
        out.labels += part.labels
        out.languages += part.languages
    return out


def read_tweeteval(directory: Path, split: str) -> Split:
    directory = Path(directory)
    return _read_pair(directory / f"{split}_text.txt", directory / f"{split}_labels.txt", "english")


@dataclass
class GermEvalDoc:
    id: str
    text: str
    relevant: bool
    sentiment: str
    categories: set[str] = field(default_factory=set)


GERMEVAL_COLUMNS = ("id", "text", "relevance", "sentiment", "category")


def read_germeval(path: Path) -> list[GermEvalDoc]:
    """One entry per document (rows of the same id and text are merged: their aspects unioned)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    docs: dict[tuple[str, str], GermEvalDoc] = {}
    reader = csv.DictReader(io.StringIO(_text_of(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    _header(path, reader, GERMEVAL_COLUMNS, "tab")
    for row in reader:
        n = reader.line_num
        if any(row[c] is None for c in GERMEVAL_COLUMNS):
            found = sum(v is not None for k, v in row.items() if k is not None)
            raise DatasetError(f"{path}:{n}: expected {len(reader.fieldnames or [])} tab-separated columns, found {found}")
        relevance = row["relevance"].strip().lower()
        sentiment = row["sentiment"].strip().lower()
        if relevance not in ("true", "false"):
            raise DatasetError(f"{path}:{n}: relevance {row['relevance']!r} is not true/false")
        if sentiment not in LABELS:
            raise DatasetError(f"{path}:{n}: sentiment {row['sentiment']!r} is not one of {LABELS}")
        key = (row["id"], row["text"])
        doc = docs.setdefault(key, GermEvalDoc(row["id"], row["text"], relevance == "true", sentiment))
        category = row["category"].strip()
        if category:
            doc.categories.add(category.split("#", 1)[0])
    if not docs:
        raise DatasetError(f"{path}: no rows")
    return list(docs.values())


@dataclass
class TopicExample:
    id: str
    text: str
    language: str
    topics: set[str]
    sentiment: str | None


def read_topic_jsonl(path: Path) -> list[TopicExample]:
    """JSON Lines with ``text`` and ``topics`` (list of labels); ``id``, ``lang``, ``sentiment`` optional."""
    import json

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    out = []
    for n, line in enumerate(_text_of(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}:{n}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not isinstance(row.get("topics"), list):
            raise DatasetError(f"{path}:{n}: expected an object with 'text' (string) and 'topics' (list)")
        sentiment = row.get("sentiment")
        if sentiment is not None and sentiment not in LABELS:
            raise DatasetError(f"{path}:{n}: sentiment {sentiment!r} is not one of {LABELS}")
        out.append(TopicExample(str(row.get("id", n)), row["text"], str(row.get("lang", "")), set(row["topics"]), sentiment))
    return out


@dataclass
class ComplaintRow:
    id: str
    text: str
    complaint: bool
    domain: str


def read_complaints(path: Path) -> list[ComplaintRow]:
    """CSV with columns ``id,text,complaint[,domain]`` (complaint: 1/0 or true/false)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing file {path}")
    out = []
    reader = csv.DictReader(io.StringIO(_text_of(path), newline=""))
    _header(path, reader, ("id", "text", "complaint"), "comma")
    try:
        for row in reader:
            line = reader.line_num
            if None in row or any(row.get(c) is None for c in ("id", "text", "complaint")):
                raise DatasetError(f"{path}:{line}: expected {len(reader.fieldnames or [])} columns")
            flag = row["complaint"].strip().lower()
            if flag not in ("0", "1", "true", "false"):
                raise DatasetError(f"{path}:{line}: complaint {row['complaint']!r} is not 0/1 or true/false")
            if not row["text"].strip():
                raise DatasetError(f"{path}:{line}: empty text")
            out.append(ComplaintRow(row["id"], row["text"], flag in ("1", "true"), (row.get("domain") or "").strip()))
    except csv.Error as err:
        raise DatasetError(f"{path}:{reader.line_num}: {err}") from None
    if not out:
        raise DatasetError(f"{path}: no rows")
    return out
