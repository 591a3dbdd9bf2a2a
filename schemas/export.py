"""Export the JSON Schema of every message model to schemas/json/ (and check they are current)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from pydantic import BaseModel

from stimmung.schemas import EXPORTED

JSON_DIR = Path(__file__).resolve().parent / "json"


def render_all() -> dict[str, str]:
    """File name -> JSON Schema text (serialization mode: what consumers actually receive)."""
    out = {}
    for name, model in EXPORTED.items():
        model = cast("type[BaseModel]", model)
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"https://stimmung.dev/schemas/{name}.v{model.model_fields['schema_version'].default}.json"
        out[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in render_all().items():
        path = directory / filename
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Names of committed schema files that differ from the models (empty when current)."""
    stale = []
    for filename, text in render_all().items():
        path = directory / filename
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(filename)
    return stale
