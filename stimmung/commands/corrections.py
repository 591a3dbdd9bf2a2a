"""`stimmung correct` (an analyst corrects a mention's labels) and `stimmung corrections export` (training examples)."""

from __future__ import annotations

import json

import click

from stimmung.commands.common import Context, es_client, fail, say

YES_NO = click.Choice(["yes", "no"])


def _known_topics(obj: Context) -> set[str]:
    from stimmung.models.topics import TaxonomyError, load_taxonomy

    try:
        return set(load_taxonomy(obj.settings.models.taxonomy_file).names)
    except TaxonomyError:
        return set()


@click.command("correct")
@click.argument("mention_id")
@click.option("--sentiment", type=click.Choice(["negative", "neutral", "positive"]), default=None)
@click.option("--topic", "topics", multiple=True, help="A topic label the mention has (repeatable).")
@click.option("--not-topic", "not_topics", multiple=True, help="A topic label it does not have (repeatable).")
@click.option("--complaint", type=YES_NO, default=None, help="Is it a complaint (the topic label 'complaint')?")
@click.option("--relevant", type=YES_NO, default=None, help="Is it about the brand at all?")
@click.option("--note", default=None, help="Why (kept with each correction; alone: a note on the mention).")
@click.option("--as", "by", required=True, help="Who corrects (name or staff id), for the audit trail.")
@click.pass_obj
def correct(obj: Context, mention_id: str, sentiment: str | None, topics: tuple[str, ...], not_topics: tuple[str, ...],
            complaint: str | None, relevant: str | None, note: str | None, by: str) -> None:
    """Correct an indexed mention's sentiment, topics, complaint or relevance (latest correction wins).

    Stored in the corrections index by mention id (shown in Kibana as "Corrections"); the
    mention itself is not changed. `stimmung corrections export` turns them into training examples."""
    from stimmung.pipeline.elastic.corrections import Change, CorrectionError
    from stimmung.pipeline.elastic.corrections import correct as store

    if complaint == "yes":
        topics = (*topics, "complaint")
    elif complaint == "no":
        not_topics = (*not_topics, "complaint")
    both = set(topics) & set(not_topics)
    if both:
        fail(f"--topic and --not-topic (or --complaint) contradict each other for {', '.join(sorted(both))}")
    changes = [Change("sentiment", sentiment)] if sentiment else []
    changes += [Change("topic", "true", t) for t in dict.fromkeys(topics)]
    changes += [Change("topic", "false", t) for t in dict.fromkeys(not_topics)]
    if relevant:
        changes.append(Change("relevant", "true" if relevant == "yes" else "false"))
    if not changes and note:
        changes.append(Change("note", note))
    if not changes:
        fail("nothing to correct: give --sentiment, --topic, --not-topic, --complaint, --relevant or --note")
    known = _known_topics(obj)
    unknown = sorted({c.label for c in changes if c.label and known and c.label not in known})
    if unknown:
        say(f"note: {', '.join(unknown)} is not in the topic taxonomy: stored as a custom label for training")
    try:
        stored = store(es_client(obj), obj.settings.elasticsearch, mention_id, changes, by, note)
    except CorrectionError as err:
        fail(str(err))
    for doc in stored:
        what = f"topic {doc['label']}" if doc["field"] == "topic" else doc["field"]
        was = f" (model: {doc['model_value']})" if doc.get("model_value") is not None else ""
        value = doc["value"] if doc["value"] is not None else repr(doc["note"])
        click.echo(f"{mention_id}: {what} = {value}{was}, by {by}, revision {doc['revision']}")


@click.group()
def corrections() -> None:
    """Analysts' corrections: export them as labelled training examples."""


@corrections.command("export")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), required=True,
              help="JSON Lines file (relative to the current directory).")
@click.pass_obj
def corrections_export(obj: Context, out: str) -> None:
    """Corrected mentions as labelled JSON Lines (id, lang, text, topics, sentiment, relevant), the format
    `stimmung models evaluate topics --jsonl` and the training scripts read. Exit 3 when there is none."""
    from stimmung.pipeline.elastic.corrections import export_examples

    client = es_client(obj)
    with open(out, "w", encoding="utf-8") as target:
        report = export_examples(client, obj.settings.elasticsearch, target)
    click.echo(json.dumps({"examples": report.examples, "corrections": report.corrections,
                           "skipped_missing_mentions": len(report.missing_mentions), "skipped_notes_only": report.notes_only,
                           "out": out}))
    if report.missing_mentions:
        say(f"{len(report.missing_mentions)} corrected mention(s) are no longer indexed (erased or expired): not exported")
    if not report.examples:
        fail("no corrections to export (stimmung correct MENTION_ID ... --as NAME records them)", code=3)
