"""`stimmung migrate-authors`: move data stored under pre-canonical pseudonyms to one pseudonym per author."""

from __future__ import annotations

import json
from pathlib import Path

import click

from stimmung.commands.common import Context, es_client, fail, say, who


@click.command("migrate-authors")
@click.option("--dry-run", is_flag=True, help="Count what would move; change nothing")
@click.option("--handles", "handles_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV of platform,handle[,key] (key: what the handle is now known as, e.g. x,jack,12)")
@click.option("--raw/--no-raw", "from_raw", default=True, show_default=True,
              help="Read the author spellings on the raw topic (handles live only there, for its retention)")
@click.pass_obj
def migrate_authors(obj: Context, dry_run: bool, handles_file: Path | None, from_raw: bool) -> None:
    """One author, one pseudonym: rewrite mentions, cases, consent records, erasures and influence
    stored under pseudonyms made before canonical author keys (schemas/identity.py). Idempotent;
    progress on stderr, counts as JSON on stdout. Run it once every worker runs this version."""
    from stimmung.kafka import ensure_topics
    from stimmung.pipeline.elastic.indices import ensure_indices
    from stimmung.pipeline.identity import AuthorMigration, aliases_from_file, aliases_from_raw, read_whole_topic

    if not from_raw and handles_file is None:
        fail("nothing to read the handles from: give --handles FILE or leave --raw on")
    s = obj.settings
    aliases = []
    if handles_file is not None:
        try:
            aliases += aliases_from_file(handles_file)
        except (ValueError, UnicodeDecodeError) as err:
            fail(str(err))
        say(f"{handles_file}: {len(aliases)} spelling(s)")
    ensure_topics(s.kafka)
    if from_raw:
        say(f"reading the raw topic {s.kafka.topics.raw} ...")
        before = len(aliases)
        aliases += aliases_from_raw(value for _, value in read_whole_topic(s.kafka, s.kafka.topics.raw))
        say(f"raw topic: {len(aliases) - before} author spelling(s)")
    client = es_client(obj)
    ensure_indices(client, s.elasticsearch, staff_command=True)
    report = AuthorMigration(s, client, dry_run=dry_run, source=who(), progress=say).run(aliases)
    click.echo(json.dumps(report.as_dict()))
