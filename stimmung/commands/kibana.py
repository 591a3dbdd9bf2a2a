"""`stimmung kibana`: the saved objects (data views, searches, charts, dashboard) as NDJSON or via Kibana's API."""

from __future__ import annotations

from pathlib import Path

import click

from stimmung.commands.common import Context, fail


@click.group()
def kibana() -> None:
    """Kibana saved objects: data views, saved searches, charts and the overview dashboard."""


@kibana.command("export")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the NDJSON (default: standard output).")
@click.option("--from-settings", is_flag=True, help="Use the configured index names instead of the defaults.")
@click.pass_obj
def kibana_export(obj: Context, out: Path | None, from_settings: bool) -> None:
    """Write the saved objects as NDJSON (for Stack Management -> Saved objects -> Import).

    To standard output unless --out is given: the repository's deploy/kibana/stimmung.ndjson is
    regenerated on purpose (`--out deploy/kibana/stimmung.ndjson`), never by accident."""
    from stimmung.kibana import build_objects, objects_for, to_ndjson

    objects = objects_for(obj.settings) if from_settings else build_objects()
    if out is None:
        click.echo(to_ndjson(objects), nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_ndjson(objects), encoding="utf-8")
    click.echo(f"wrote {len(objects)} objects to {out}", err=True)


@kibana.command("import")
@click.option("--url", default=None, help="Kibana base URL (default: kibana.url).")
@click.option("--space", default=None, help="Kibana space (default: kibana.space or the default space).")
@click.pass_obj
def kibana_import(obj: Context, url: str | None, space: str | None) -> None:
    """Import (overwrite) the saved objects via Kibana's saved-objects API, with the configured index names."""
    from stimmung.kibana import KibanaError, import_objects, objects_for

    ks = obj.settings.kibana.model_copy(update={k: v for k, v in {"url": url and url.rstrip("/"), "space": space}.items() if v})
    objects = objects_for(obj.settings)
    try:
        body = import_objects(ks, objects)
    except KibanaError as err:
        fail(str(err))
    click.echo(f"imported {body.get('successCount', len(objects))} objects into {ks.url}"
               + (f" (space {ks.space})" if ks.space else "")
               + f"; dashboard: {ks.url}{'/s/' + ks.space if ks.space else ''}/app/dashboards#/view/stimmung-overview")
