"""Staff commands on the index: `stimmung search`, `erase` (data-subject requests) and `migrate-indices`."""

from __future__ import annotations

import json
import sys

import click

from stimmung.commands.common import Context, es_client, fail, say, who


def _pseudonyms_for(obj: Context, client):
    """author: handles -> the pseudonyms they have on each platform present in the index."""
    from stimmung.pipeline.erasure import pseudonyms_of

    return lambda handle: list(pseudonyms_of(obj.settings, client, handle))


@click.command("search")
@click.argument("query", required=False)
@click.option("--since", default="24h", show_default=True, help="Duration (30m, 1h, 7d, 2w) or ISO timestamp.")
@click.option("--until", default=None, help="Duration ago or ISO timestamp (default: now).")
@click.option("--sentiment", multiple=True, type=click.Choice(["negative", "neutral", "positive"]))
@click.option("--topic", multiple=True, help="Topic label (repeatable).")
@click.option("--brand", multiple=True, help="Brand name as tagged by the enricher (repeatable).")
@click.option("--lang", "language", multiple=True, help="Language code (repeatable).")
@click.option("--platform", multiple=True)
@click.option("--min-relevance", type=click.FloatRange(0, 1), default=None,
              help="Only mentions the relevance head judges about the brand with at least this probability "
                   "(e.g. 0.5); mentions without a relevance (heads off) still match.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="Newest N hits.")
@click.option("--all", "everything", is_flag=True, help="Every hit (for exports; paged, progress on stderr).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "ndjson"]), default=None,
              help="Output format (default: table).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--fields", default=None, help="CSV columns, comma-separated (default: all; see README).")
@click.option("--tz", "tz_name", default="UTC", show_default=True, help="Display time zone, e.g. Europe/Berlin.")
@click.option("--wide", is_flag=True, help="Table with every column, whatever the terminal width.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to FILE (relative to the current directory) instead of standard output.")
@click.option("--kibana-url", default=None, help="Kibana base URL for the Discover link (default: kibana.url).")
@click.pass_obj
def search_cmd(obj: Context, query: str | None, since: str, until: str | None, sentiment: tuple[str, ...],
               topic: tuple[str, ...], brand: tuple[str, ...], language: tuple[str, ...], platform: tuple[str, ...],
               min_relevance: float | None, limit: int, everything: bool, fmt: str | None, as_json: bool, fields: str | None, tz_name: str,
               wide: bool, out: str | None, kibana_url: str | None) -> None:
    """Search indexed mentions with a brand query, e.g. 'Nordbahn AND Verspätung*' --since 1h --sentiment negative.

    Table for people; csv, json or ndjson for spreadsheets and scripts (--out FILE). Times are
    shown in --tz (UTC by default)."""
    from stimmung.brandquery import BrandQueryError
    from stimmung.pipeline.elastic.search import SearchRequest, stream
    from stimmung.tables import display_zone, parse_fields

    if as_json and fmt not in (None, "json"):
        fail(f"--json and --format {fmt} contradict each other")
    fmt = "json" if as_json else (fmt or "table")
    try:
        zone = display_zone(tz_name)
        columns = parse_fields(fields)
    except ValueError as err:
        fail(str(err))
    if fields and fmt != "csv":
        fail("--fields applies to --format csv")
    request = SearchRequest(query=query, since=since, until=until, sentiment=list(sentiment), topic=list(topic),
                            brand=list(brand), language=list(language), platform=list(platform),
                            limit=2**31 - 1 if everything else limit, min_relevance=min_relevance)
    client = es_client(obj)
    bar = _Progress()
    try:
        result = stream(client, obj.settings.elasticsearch.mentions_index, request, _pseudonyms_for(obj, client),
                        kibana_url or obj.settings.kibana.url, progress=bar.update)
    except BrandQueryError as err:
        fail(f"brand query: {err}")
    except ValueError as err:
        fail(str(err))
    target = open(out, "w", encoding="utf-8", newline="") if out else sys.stdout
    try:
        written = _write(fmt, result, query, columns, zone, wide or bool(out), target)
    finally:
        bar.close()
        if out:
            target.close()
    if out:
        say(f"wrote {written} of {result.total} mention(s) to {out} ({fmt})")
    elif fmt == "table" and result.discover_url:
        click.echo(f"Kibana: {result.discover_url}")


class _Progress:
    """A progress line on stderr for exports of more than one page (quiet for a single page)."""

    def __init__(self):
        self._bar = None

    def update(self, fetched: int, expected: int) -> None:
        from stimmung.pipeline.elastic.search import PAGE_SIZE

        if self._bar is None and expected > PAGE_SIZE:
            from tqdm import tqdm

            self._bar = tqdm(total=expected, desc="exporting", unit=" mentions", file=sys.stderr)
        if self._bar is not None:
            self._bar.update(fetched - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _write(fmt: str, result, query: str | None, columns: list[str], zone, wide: bool, target) -> int:
    from stimmung.tables import write_csv, write_json, write_ndjson

    if fmt == "csv":
        return write_csv(result.hits, target, columns, zone)
    if fmt == "ndjson":
        return write_ndjson(result.hits, target)
    if fmt == "json":
        return write_json(result.total, result.sentiment, result.discover_url, result.hits, target)
    import shutil

    from rich.console import Console

    from stimmung.pipeline.elastic.search import SearchResult
    from stimmung.tables import search_table

    hits = list(result.hits)
    # a file or --wide: every column, never squeezed; a terminal: its width (80 when unknown)
    width = 200 if wide else shutil.get_terminal_size((80, 24)).columns
    console = Console(file=target, width=width, highlight=False, no_color=target is not sys.stdout)
    console.print(search_table(SearchResult(result.total, hits, result.sentiment, result.discover_url), query,
                               zone, width))
    mix = ", ".join(f"{k} {v}" for k, v in sorted(result.sentiment.items()))
    if mix:
        console.print(f"sentiment: {mix}")
    return len(hits)


@click.command("erase")
@click.option("--author", "handle", default=None, help="The author's handle (as on the platform).")
@click.option("--platform", multiple=True, help="The author's platform(s). Needed when the handle has data on several.")
@click.option("--all-platforms", is_flag=True,
              help="Erase the handle on every platform where it has data (the same handle may be different people).")
@click.option("--pseudonym", multiple=True, help="Erase by pseudonym instead (e.g. from an account-deletion event).")
@click.option("--even-if-absent", is_flag=True,
              help="Record the erasure although nothing is indexed yet (keeps future posts out; needs --platform).")
@click.option("--reason", default="data-subject-request", show_default=True)
@click.option("--requested-by", default=None, help="Operator or ticket reference (no personal data).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def erase_cmd(obj: Context, handle: str | None, platform: tuple[str, ...], all_platforms: bool, pseudonym: tuple[str, ...],
              even_if_absent: bool, reason: str, requested_by: str | None, yes: bool) -> None:
    """Remove every indexed mention, case and consent of an author, and keep them removed (replays included).

    Shows what it found per platform before asking; finding nothing is an error (exit 3): a typo in
    the handle, the wrong platform or another pseudonym key than the workers' all look like that.
    """
    from stimmung.pipeline.elastic.indices import ensure_indices
    from stimmung.pipeline.erasure import erase_authors, footprint, not_pseudonyms, pseudonyms_of

    if bool(handle) == bool(pseudonym):
        fail("give either --author HANDLE or --pseudonym PSN (one or more)")
    es = obj.settings.elasticsearch
    client = es_client(obj)
    ensure_indices(client, es, staff_command=True)
    if handle:
        from stimmung.schemas.identity import key_hint

        for hint in filter(None, (key_hint(p, handle) for p in platform)):
            say(f"note: {hint}")
        candidates = pseudonyms_of(obj.settings, client, handle, platform)
    else:
        bad = not_pseudonyms(pseudonym)
        if bad:
            fail(f"not a pseudonym: {', '.join(bad)}")
        candidates = {p: (platform[0] if platform else "unknown") for p in pseudonym}
    found = [footprint(client, es, p, plat) for p, plat in candidates.items()]
    present = [f for f in found if not f.empty]
    if not present and not even_if_absent:
        where = ", ".join(sorted(candidates.values())) or "no platform (the index is empty)"
        fail(f"nothing to erase: no mention, case or consent of this author on {where}. Check the handle and "
             "--platform, and that this command uses the workers' pseudonym key (privacy.pseudonym_key); "
             "--even-if-absent --platform P records the erasure anyway", code=3)
    if even_if_absent and not present:
        if not platform:
            fail("--even-if-absent needs --platform (which account to keep out)")
        present = found
    if handle and not platform and len({f.platform for f in present}) > 1 and not all_platforms:
        lines = "\n".join(f"  {f.platform}: {f.mentions} mention(s), {f.cases} case(s)" for f in present)
        fail(f"this handle has data on {len({f.platform for f in present})} platforms — possibly different people:\n{lines}\n"
             "say which with --platform (or --all-platforms if it is the same person everywhere)")
    for f in present:
        say(f"{f.platform} {f.pseudonym}: {f.mentions} mention(s), {f.cases} case(s), "
            f"consent record: {'yes' if f.consent else 'no'}")
    targets = {f.pseudonym: f.platform for f in present}
    if not yes:
        click.confirm(f"Erase all of the above ({sum(f.mentions for f in present)} mention(s), "
                      f"{sum(f.cases for f in present)} case(s))?", abort=True, err=True)
    say("erasing (second sweep after the sinks' refresh interval) ...")
    result = erase_authors(obj.settings, client, targets, reason=reason, requested_by=requested_by,
                           consent_source=requested_by or who())
    click.echo(json.dumps({"pseudonyms": result.pseudonyms, "platforms": sorted(set(targets.values())),
                           "deleted": result.deleted, "method": result.method}))


@click.command("migrate-indices")
@click.pass_obj
def migrate_indices(obj: Context) -> None:
    """Move mentions from older index-template versions into the current one (after an upgrade).

    Run once every sink runs the new version; until then old-version indices stay searchable
    through the alias, but replayed mentions would show twice.
    """
    from tqdm import tqdm

    from stimmung.pipeline.elastic.migration import migrate_older_versions

    with tqdm(desc="migrating", unit=" docs", file=sys.stderr) as bar:
        report = migrate_older_versions(es_client(obj), obj.settings.elasticsearch, progress=bar.update)
    click.echo(json.dumps({"indices": report.indices, "copied": report.copied, "kept_newer": report.kept_newer,
                           "failed": report.failed}))
    if report.failed:
        fail(f"{report.failed} document(s) could not be migrated; their indices were kept (see the log)")
