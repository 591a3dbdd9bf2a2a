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
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--kibana-url", default=None, help="Kibana base URL for the Discover link (default: kibana.url).")
@click.pass_obj
def search_cmd(obj: Context, query: str | None, since: str, until: str | None, sentiment: tuple[str, ...],
               topic: tuple[str, ...], brand: tuple[str, ...], language: tuple[str, ...], platform: tuple[str, ...],
               limit: int, as_json: bool, kibana_url: str | None) -> None:
    """Search indexed mentions with a brand query, e.g. 'Nordbahn AND Verspätung*' --since 1h --sentiment negative."""
    from stimmung.brandquery import BrandQueryError
    from stimmung.pipeline.elastic.search import SearchRequest, search

    request = SearchRequest(query, since, until, list(sentiment), list(topic), list(brand), list(language),
                            list(platform), limit)
    client = es_client(obj)
    try:
        result = search(client, obj.settings.elasticsearch.mentions_index, request, _pseudonyms_for(obj, client),
                        kibana_url or obj.settings.kibana.url)
    except BrandQueryError as err:
        fail(f"brand query: {err}")
    except ValueError as err:
        fail(str(err))
    if as_json:
        click.echo(json.dumps({"total": result.total, "sentiment": result.sentiment,
                               "discover_url": result.discover_url, "mentions": result.hits},
                              ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    from stimmung.tables import search_table

    console = Console()
    console.print(search_table(result, query))
    mix = ", ".join(f"{k} {v}" for k, v in sorted(result.sentiment.items()))
    if mix:
        console.print(f"sentiment: {mix}")
    if result.discover_url:
        click.echo(f"Kibana: {result.discover_url}")


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
