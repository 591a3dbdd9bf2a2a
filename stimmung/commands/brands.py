"""`stimmung brands`: try a query on the indexed history, manage the brands of the settings file, re-tag history."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from stimmung.commands.common import Context, es_client, fail, say
from stimmung.commands.search import _pseudonyms_for

_RESTART = ("workers tag new mentions with it after a restart (`stimmung worker`); "
            "`stimmung brands retag --since 30d` re-tags what is indexed")


def _settings_file(obj: Context) -> Path:
    if not obj.config:
        fail("which settings file? give --config FILE (before the command) or set STIMMUNG_CONFIG")
    return Path(obj.config)


def _bar(count: int, peak: int, width: int = 40) -> str:
    return "█" * max(1 if count else 0, round(width * count / peak)) if peak else ""


@click.group()
def brands() -> None:
    """Brands: backtest a query, list/add/remove/set-queries in the settings file, re-tag indexed mentions."""


@brands.command("test")
@click.argument("query")
@click.option("--since", default="30d", show_default=True, help="Duration (7d, 2w) or ISO timestamp.")
@click.option("--brand", default=None, help="Compare with this brand's current queries (new / lost mentions).")
@click.option("--samples", default=5, show_default=True, type=click.IntRange(0, 50))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def brands_test(obj: Context, query: str, since: str, brand: str | None, samples: int, as_json: bool) -> None:
    """How many indexed mentions QUERY would have matched, per day, with samples — before it goes live."""
    from dataclasses import asdict

    from stimmung.brandquery import BrandQueryError, parse
    from stimmung.pipeline.elastic.brands import backtest
    from stimmung.pipeline.elastic.search import since_to_date_math

    try:
        parse(query)
        since_math = since_to_date_math(since)
    except BrandQueryError as err:
        fail(f"brand query: {err}")
    except ValueError as err:
        fail(str(err))
    current: list[str] = []
    if brand:
        known = {b.name.casefold(): b for b in obj.settings.brands}
        if brand.casefold() not in known:
            fail(f"no brand {brand!r} in the settings (brands: {', '.join(b.name for b in obj.settings.brands) or 'none'})")
        current = known[brand.casefold()].queries
    client = es_client(obj)
    result = backtest(client, obj.settings.elasticsearch.mentions_index, query, since_math, brand, current,
                      _pseudonyms_for(obj, client), samples)
    if as_json:
        click.echo(json.dumps(asdict(result), ensure_ascii=False, indent=2))
        return
    click.echo(f"{query!r} matches {result.total} indexed mention(s) since {since}")
    peak = max((n for _, n in result.per_day), default=0)
    for day, n in result.per_day:
        click.echo(f"  {day} {n:6d} {_bar(n, peak)}")
    for s in result.samples:
        click.echo(f"  · {s.time[:16].replace('T', ' ')}  {s.text[:110]}")
    if brand:
        click.echo(f"{brand}'s current queries match {result.current_total}; this query would add {result.new} "
                   f"and lose {result.lost}")
        for label, found in (("new", result.new_samples), ("lost", result.lost_samples)):
            for s in found:
                click.echo(f"  {label:4} {s.time[:16].replace('T', ' ')}  {s.text[:105]}")
    if not result.total:
        say("nothing matched: check the spelling, the time range, and that mentions are indexed")


@brands.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def brands_list(obj: Context, as_json: bool) -> None:
    """The configured brands and their queries (the effective settings)."""
    found = [{"name": b.name, "queries": b.queries} for b in obj.settings.brands]
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    if not found:
        say("no brands configured" + (f" in {obj.config}" if obj.config else " (no settings file: --config FILE)"))
        return
    for b in found:
        click.echo(b["name"])
        for q in b["queries"]:
            click.echo(f"  {q}")


def _edit(action, *args) -> None:
    from stimmung.brandquery import BrandQueryError
    from stimmung.brands_file import BrandsFileError

    try:
        action(*args)
    except BrandQueryError as err:
        fail(f"brand query: {err}")
    except BrandsFileError as err:
        fail(str(err))


@brands.command("add")
@click.argument("name")
@click.option("--query", "queries", multiple=True, required=True, help="A brand query (repeatable).")
@click.pass_obj
def brands_add(obj: Context, name: str, queries: tuple[str, ...]) -> None:
    """Add a brand to the settings file (--config / STIMMUNG_CONFIG; created if missing)."""
    from stimmung.brands_file import add_brand

    path = _settings_file(obj)
    _edit(add_brand, path, name, list(queries))
    click.echo(f"added brand {name!r} to {path}; {_RESTART}")


@brands.command("remove")
@click.argument("name")
@click.pass_obj
def brands_remove(obj: Context, name: str) -> None:
    """Remove a brand from the settings file."""
    from stimmung.brands_file import remove_brand

    path = _settings_file(obj)
    _edit(remove_brand, path, name)
    click.echo(f"removed brand {name!r} from {path}; {_RESTART}")


@brands.command("set-queries")
@click.argument("name")
@click.option("--query", "queries", multiple=True, required=True, help="The brand's queries (replace the old ones).")
@click.pass_obj
def brands_set_queries(obj: Context, name: str, queries: tuple[str, ...]) -> None:
    """Replace a brand's queries in the settings file."""
    from stimmung.brands_file import set_queries

    path = _settings_file(obj)
    _edit(set_queries, path, name, list(queries))
    click.echo(f"set {len(queries)} query/queries for {name!r} in {path}; {_RESTART}")


@brands.command("retag")
@click.option("--since", default="30d", show_default=True, help="Duration (7d, 2w) or ISO timestamp.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def brands_retag(obj: Context, since: str, as_json: bool) -> None:
    """Re-tag indexed mentions (brands, brand_names) with the brands of the settings, after a change."""
    from stimmung.pipeline.elastic.brands import retag
    from stimmung.pipeline.elastic.search import since_to_date_math

    try:
        since_math = since_to_date_math(since)
    except ValueError as err:
        fail(str(err))
    configured = [(b.name, b.queries) for b in obj.settings.brands]
    if not configured:
        say("no brands configured: every brand tag in the range will be removed")
    client = es_client(obj)
    from tqdm import tqdm

    with tqdm(desc="re-tagging", unit=" mentions", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = retag(client, obj.settings.elasticsearch.mentions_index, configured, since_math,
                       _pseudonyms_for(obj, client), progress)
    summary = {"scanned": report.scanned, "updated": report.updated, "added": dict(report.added),
               "removed": dict(report.removed), "conflicts_retried": report.conflicts, "failed": len(report.failed)}
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False))
    else:
        changes = ", ".join([f"+{n} {b}" for b, n in sorted(report.added.items())]
                            + [f"-{n} {b}" for b, n in sorted(report.removed.items())]) or "no tag changed"
        click.echo(f"scanned {report.scanned} mention(s) since {since}, updated {report.updated}: {changes}")
    if report.failed:
        fail(f"{len(report.failed)} mention(s) could not be updated (e.g. {', '.join(report.failed[:3])}); run retag again")
    if not report.scanned:
        fail(f"no indexed mention since {since}: nothing to re-tag", code=3)
