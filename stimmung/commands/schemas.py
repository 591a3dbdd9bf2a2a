"""`stimmung config` and `stimmung schemas`: the effective settings and the message models' JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stimmung.commands.common import Context, fail, say


@click.command("config")
@click.pass_obj
def show_config(obj: Context) -> None:
    """Print the effective settings (secrets masked) and say which settings file they came from."""
    from stimmung.config import default_config_path

    settings = obj.settings
    if settings.source_file is not None:
        say(f"settings file: {settings.source_file}")
    else:
        say(f"settings file: none (defaults and STIMMUNG_* environment; the default file {default_config_path()} "
            "does not exist)")
    click.echo(json.dumps(settings.model_dump(mode="json"), indent=2))


@click.group()
def schemas() -> None:
    """JSON Schema files of every message model."""


@schemas.command("export")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
def schemas_export(out: Path | None) -> None:
    """Write schemas/json/*.schema.json from the pydantic models."""
    from stimmung.schemas.export import JSON_DIR, write_all

    for path in write_all(out or JSON_DIR):
        say(f"wrote {path}")


@schemas.command("check")
def schemas_check() -> None:
    """Exit 1 when a committed schema file differs from its model."""
    from stimmung.schemas.export import stale_files

    stale = stale_files()
    if stale:
        fail(f"out of date: {', '.join(stale)} (run `stimmung schemas export`)", code=1)
    say("schemas are current")
