"""Editing the brands of a settings file (`stimmung brands add|remove|set-queries`).

Only the top-level ``brands:`` block of the YAML file is rewritten; every other line — other
sections, their comments, their order — stays byte for byte as it was (comments *inside* the
brands block are not kept). The result is checked before it is written: parsed again, the file
must hold exactly the old content with the new brands, and every query must parse. The file is
replaced atomically (a temporary file renamed over it), so a crash leaves the old or the new one.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from stimmung.brandquery import BrandQueryError, parse

_TOP_LEVEL_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")
_BRANDS_KEY = re.compile(r"^brands\s*:")


class BrandsFileError(ValueError):
    pass


def _load(text: str, path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as err:
        raise BrandsFileError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise BrandsFileError(f"{path}: expected a mapping of settings at the top level")
    return data


def read_brands(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    brands = _load(path.read_text(encoding="utf-8"), path).get("brands") or []
    if not isinstance(brands, list):
        raise BrandsFileError(f"{path}: brands must be a list")
    return brands


def check_queries(queries: list[str]) -> None:
    """Raise BrandQueryError (with its position) for the first query that does not parse."""
    if not queries:
        raise BrandsFileError("a brand needs at least one --query")
    for query in queries:
        parse(query)


def _find(brands: list[dict[str, Any]], name: str) -> int | None:
    for i, brand in enumerate(brands):
        if str(brand.get("name", "")).casefold() == name.casefold():
            return i
    return None


def add_brand(path: Path, name: str, queries: list[str]) -> list[dict[str, Any]]:
    check_queries(queries)
    brands = read_brands(path)
    if _find(brands, name) is not None:
        raise BrandsFileError(f"brand {name!r} exists already in {path}; change its queries with `brands set-queries`")
    brands.append({"name": name, "queries": list(queries)})
    write_brands(path, brands)
    return brands


def remove_brand(path: Path, name: str) -> list[dict[str, Any]]:
    brands = read_brands(path)
    i = _find(brands, name)
    if i is None:
        raise BrandsFileError(f"no brand {name!r} in {path} (brands there: {', '.join(b.get('name', '?') for b in brands) or 'none'})")
    del brands[i]
    write_brands(path, brands)
    return brands


def set_queries(path: Path, name: str, queries: list[str]) -> list[dict[str, Any]]:
    check_queries(queries)
    brands = read_brands(path)
    i = _find(brands, name)
    if i is None:
        raise BrandsFileError(f"no brand {name!r} in {path}; add it with `brands add`")
    brands[i] = {**brands[i], "queries": list(queries)}
    write_brands(path, brands)
    return brands


def replace_brands_block(text: str, brands: list[dict[str, Any]]) -> str:
    """``text`` with its top-level ``brands:`` block (or none) replaced by ``brands``."""
    block = yaml.safe_dump({"brands": brands}, allow_unicode=True, sort_keys=False, width=1000) if brands else "brands: []\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _BRANDS_KEY.match(line)), None)
    if start is None:
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + block
    end = start + 1
    # the block runs until the next top-level key; blank lines and comments just before that key belong to it
    while end < len(lines) and not _TOP_LEVEL_KEY.match(lines[end]) and not lines[end].startswith(("---", "...")):
        end += 1
    while end - 1 > start and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    return "".join(lines[:start]) + block + "".join(lines[end:])


def write_brands(path: Path, brands: list[dict[str, Any]]) -> None:
    path = Path(path)
    old_text = path.read_text(encoding="utf-8") if path.is_file() else ""
    old = _load(old_text, path)
    new_text = replace_brands_block(old_text, brands)
    new = _load(new_text, path)
    expected = {**old, "brands": brands}
    if new != expected:  # a layout this editor does not understand: refuse rather than corrupt
        raise BrandsFileError(f"{path}: could not rewrite the brands block safely (unusual YAML layout); edit it by hand")
    for brand in brands:
        try:
            check_queries(list(brand.get("queries") or []))
        except BrandQueryError as err:
            raise BrandsFileError(f"brand {brand.get('name')!r}: {err}") from None
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(new_text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
