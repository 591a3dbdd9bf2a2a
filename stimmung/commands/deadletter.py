"""`stimmung deadletter list|show|replay`: what the pipeline could not process, and sending it back after a fix.

An id is the letter's position on the dead-letter topic, PARTITION:OFFSET (pipeline/deadletters.py).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from stimmung.commands.common import Context, fail, say

STAGES = ["connector", "enrich", "sink", "alerting"]


def _since(value: str | None) -> datetime | None:
    """``30m``/``7d`` or an ISO timestamp -> an aware datetime."""
    if not value:
        return None
    import re
    from datetime import timedelta

    match = re.fullmatch(r"(\d+)([smhdw])", value.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return datetime.now(timezone.utc) - timedelta(**{unit: int(match.group(1))})
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(f"--since {value!r}: use a duration like 30m, 1h, 7d, 2w or an ISO timestamp")
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _matching(obj: Context, stage: str | None, reason: str | None, since: str | None):
    from stimmung.pipeline.deadletters import DeadLetterError, read_letters

    after = _since(since)
    try:
        letters = read_letters(obj.settings.kafka, after)
    except DeadLetterError as err:
        fail(str(err))
    return [letter for letter in letters if letter.matches(stage, reason, after)]


def _describe_filter(stage: str | None, reason: str | None, since: str | None) -> str:
    parts = [f"stage {stage}"] * bool(stage) + [f"reason {reason!r}"] * bool(reason) + [f"since {since}"] * bool(since)
    return " and ".join(parts) or "no filter"


@click.group()
def deadletter() -> None:
    """Dead letters: list and inspect what a stage could not process, replay it after a fix."""


@deadletter.command("list")
@click.option("--stage", type=click.Choice(STAGES), default=None)
@click.option("--reason", default=None, help="Error type (exact, e.g. validation) or part of the reason text.")
@click.option("--since", default=None, help="Duration (30m, 7d) or ISO timestamp.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="The newest N.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per letter, one per line.")
@click.pass_obj
def deadletter_list(obj: Context, stage: str | None, reason: str | None, since: str | None, limit: int,
                    as_json: bool) -> None:
    """Dead letters, oldest first (the newest --limit of them). Exit 3 when none matches."""
    found = _matching(obj, stage, reason, since)
    shown = found[-limit:]
    if as_json:
        for letter in shown:
            click.echo(json.dumps({k: v for k, v in letter.as_dict().items() if k not in ("payload", "payload_decoded")},
                                  ensure_ascii=False))
    elif found:
        from rich.console import Console

        from stimmung.tables import dead_letters_table

        Console().print(dead_letters_table(shown, len(found)))
        say("`stimmung deadletter show ID` for one letter's payload")
    if not found:
        fail(f"no dead letter on {obj.settings.kafka.topics.deadletter} matches ({_describe_filter(stage, reason, since)})",
             code=3)


@deadletter.command("show")
@click.argument("letter_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def deadletter_show(obj: Context, letter_id: str, as_json: bool) -> None:
    """One dead letter: stage, reason, where it came from and its original payload, decoded."""
    from stimmung.pipeline.deadletters import DeadLetterError, read_letter

    try:
        letter = read_letter(obj.settings.kafka, letter_id)
    except DeadLetterError as err:
        fail(str(err))
    if as_json:
        click.echo(json.dumps(letter.as_dict(), ensure_ascii=False, indent=2))
        return
    f = letter.fields
    for label, value in (("id", letter.id), ("stage", letter.stage), ("error type", letter.error_type),
                         ("reason", letter.reason), ("source", letter.source_position), ("key", letter.key or "–"),
                         ("failed at", f"{letter.failed_at:%Y-%m-%d %H:%M:%S} UTC")):
        click.echo(f"{label + ':':12} {value}")
    payload = letter.decoded_payload()
    click.echo("payload:")
    click.echo(json.dumps(payload, ensure_ascii=False, indent=2) if not isinstance(payload, str) else payload)
    if f.get("schema_version") is None:
        say("note: this record does not look like a Stimmung dead letter")


@deadletter.command("replay")
@click.option("--stage", type=click.Choice(STAGES), default=None)
@click.option("--reason", default=None, help="Error type (exact) or part of the reason text.")
@click.option("--since", default=None, help="Duration (30m, 7d) or ISO timestamp.")
@click.option("--id", "ids", multiple=True, help="Only these letters (PARTITION:OFFSET, repeatable).")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed, publish nothing.")
@click.pass_obj
def deadletter_replay(obj: Context, stage: str | None, reason: str | None, since: str | None, ids: tuple[str, ...],
                      dry_run: bool) -> None:
    """Publish the original bytes of matching letters to the topic they came from, for a fixed worker,
    sink or mapping to handle. Safe to repeat: mentions are keyed and indexed by mention id.
    Exit 3 when nothing matches or nothing of it can be replayed."""
    from stimmung.pipeline.deadletters import DeadLetterError, parse_id, plan_replay, read_letter, replay

    if not (stage or reason or since or ids):
        fail("say what to replay: --stage, --reason, --since and/or --id (everything at once is rarely meant)")
    try:
        if ids:
            wanted = [read_letter(obj.settings.kafka, i) for i in ids if parse_id(i)]
            letters = [letter for letter in wanted if letter.matches(stage, reason, _since(since))]
        else:
            letters = _matching(obj, stage, reason, since)
    except DeadLetterError as err:
        fail(str(err))
    if not letters:
        fail(f"no dead letter matches ({_describe_filter(stage, reason, since)}" + (f", ids {', '.join(ids)}" if ids else "")
             + "): nothing replayed", code=3)
    plan = plan_replay(obj.settings.kafka, letters)
    for letter, why in plan.not_replayable:
        say(f"skipping {letter.id} ({letter.stage}, {letter.error_type}): {why}")
    if not plan.replay:
        fail(f"none of the {len(letters)} matching dead letter(s) can be replayed", code=3)
    by_topic: dict[str, int] = {}
    for letter in plan.replay:
        by_topic[letter.source] = by_topic.get(letter.source, 0) + 1
    where = ", ".join(f"{n} to {topic}" for topic, n in sorted(by_topic.items()))
    if dry_run:
        for letter in plan.replay:
            click.echo(f"would replay {letter.id} -> {letter.source} (key {letter.key or '–'}): {letter.reason[:100]}")
        click.echo(f"dry run: {len(plan.replay)} dead letter(s) would be replayed ({where}); nothing was published")
        return
    count = replay(obj.settings.kafka, plan.replay)
    click.echo(f"replayed {count} dead letter(s) ({where})"
               + (f"; {len(plan.not_replayable)} could not be replayed (see above)" if plan.not_replayable else ""))
