"""``stimmung migrate-authors``: data stored under pseudonyms made before canonical author keys
(schemas/identity.py) moves to the canonical pseudonym, so one person is one author again.

Pseudonyms are keyed HMACs: old -> new needs the handles. They come from the raw topic (the only
place handles live, kept for its retention; a mention published by the new connectors also
names the other spelling, e.g. an X username beside the user id, in ``author.display_handle``)
and/or a file an operator supplies (``platform,handle[,key]``: ``key`` is what the handle is now
known as, e.g. ``x,jack,12`` or ``bluesky,alice.bsky.social,did:plc:...``).

For every old pseudonym that differs from its new one and holds anything:
- erased on either side: the erasure covers both (a record for each, their mentions, cases and
  consents removed) — a person who asked to be erased stays erased under every spelling;
- the consent record is re-keyed on the compacted consent topic (tombstone for the old key) and in
  the consents index; if both had one, the newer record wins (the later expression of the
  person's will); audited as ``migrate``; the CRM link of the moved documents follows the result;
- mentions (``author.pseudonym``) and cases (``author_pseudonym``) are rewritten;
- the influence state is merged into the new key (counts add, averages weighted) and the old key
  tombstoned.
Idempotent: a second run finds nothing under the old pseudonyms. Run it once every worker runs
the version with canonical keys (older workers would keep writing old pseudonyms).
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, TopicPartition

from stimmung.config import KafkaSettings, Settings
from stimmung.kafka import client_config, confirm_sent, make_producer
from stimmung.pipeline.crm.consent import ConsentService, update_by_query
from stimmung.pipeline.erasure import AUTHOR_FIELD, CASE_AUTHOR_FIELD, delete_mentions_of
from stimmung.pipeline.influence import PRIOR_MENTIONS
from stimmung.pipeline.privacy import pseudonymizer_from_settings
from stimmung.schemas.consent import ConsentAudit, ConsentRecord
from stimmung.schemas.erasure import ErasureRecord
from stimmung.schemas.pseudonym import Pseudonymizer

CHUNK = 500
MOVE_MENTION_SCRIPT = ("if (ctx._source.author != null && params.moves.containsKey(ctx._source.author.pseudonym)) "
                       "{ ctx._source.author.pseudonym = params.moves[ctx._source.author.pseudonym] }")
MOVE_CASE_SCRIPT = ("if (params.moves.containsKey(ctx._source.author_pseudonym)) "
                    "{ ctx._source.author_pseudonym = params.moves[ctx._source.author_pseudonym] }")


@dataclass(frozen=True)
class Alias:
    """A spelling of an author as stored before (``handle``); ``key``: what it is known as now
    (None: the handle's own canonical key)."""
    platform: str
    handle: str
    key: str | None = None


@dataclass
class Plan:
    moves: dict[str, tuple[str, str]] = field(default_factory=dict)  # old pseudonym -> (new, platform)
    ambiguous: int = 0  # old pseudonyms that would go to two different authors: left alone


@dataclass
class MigrationReport:
    dry_run: bool
    aliases: int = 0
    candidates: int = 0
    ambiguous: int = 0
    mentions: int = 0
    cases: int = 0
    consents: int = 0
    consent_conflicts: int = 0
    erasures_extended: int = 0
    erased_documents: int = 0
    influence: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def read_whole_topic(kafka: KafkaSettings, topic: str, idle_timeout_s: float = 60.0) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Every (key, value) on ``topic`` up to its end at the time of the call (no consumer group)."""
    consumer = KafkaConsumer(**client_config(kafka), client_id=f"{kafka.client_id}-migrate-authors",
                             enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(partitions)
        last_progress = time.monotonic()
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            batch = consumer.poll(timeout_ms=1000)
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > idle_timeout_s:
                raise RuntimeError(f"reading {topic} made no progress for {idle_timeout_s:.0f} s")
            for tp, records in batch.items():
                for record in records:
                    if record.offset < end[tp]:
                        yield record.key, record.value
    finally:
        consumer.close(autocommit=False)


def aliases_from_raw(values: Iterable[bytes | None]) -> Iterator[Alias]:
    """The author spellings in raw-topic messages (malformed ones are skipped: not ours to judge here)."""
    for value in values:
        try:
            mention = json.loads(value) if value else None
        except ValueError:
            continue
        author = mention.get("author") if isinstance(mention, dict) else None
        platform = mention.get("platform") if isinstance(mention, dict) else None
        if not isinstance(author, dict) or not isinstance(platform, str) or not platform.strip():
            continue
        handle, display = author.get("handle"), author.get("display_handle")
        if isinstance(handle, str) and handle.strip():
            yield Alias(platform.strip().lower(), handle)
            if isinstance(display, str) and display.strip():
                yield Alias(platform.strip().lower(), display, handle)


def aliases_from_file(path: Path) -> list[Alias]:
    """``platform,handle[,key]`` per line (CSV; ``#`` comments and a ``platform,handle,key`` header allowed)."""
    out = []
    with open(path, newline="", encoding="utf-8") as handle_file:
        for number, row in enumerate(csv.reader(handle_file), 1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if number == 1 and [c.strip().lower() for c in row[:2]] == ["platform", "handle"]:
                continue
            cells = [c.strip() for c in row]
            if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
                raise ValueError(f"{path}:{number}: expected platform,handle[,key], got {len(cells)} field(s)")
            out.append(Alias(cells[0].lower(), cells[1], (cells[2] or None) if len(cells) == 3 else None))
    return out


def plan_moves(pseudonymizer: Pseudonymizer, aliases: Iterable[Alias]) -> Plan:
    """old pseudonym -> new pseudonym for every alias whose stored pseudonym is not the canonical one."""
    targets: dict[str, set[tuple[str, str]]] = {}
    for alias in aliases:
        old = pseudonymizer.legacy_pseudonym(alias.platform, alias.handle)
        new = pseudonymizer.pseudonym(alias.platform, alias.key or alias.handle)
        if old != new:
            targets.setdefault(old, set()).add((new, alias.platform))
    plan = Plan()
    for old, choices in targets.items():
        if len(choices) > 1:  # e.g. a username that two accounts held in turn: no guessing
            plan.ambiguous += 1
        else:
            plan.moves[old] = next(iter(choices))
    for old in list(plan.moves):  # a target that is itself an old spelling: follow it to the end
        new, platform = plan.moves[old]
        seen = {old}
        while new in plan.moves and new not in seen:
            seen.add(new)
            new = plan.moves[new][0]
        plan.moves[old] = (new, platform)
    return plan


def merge_influence(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    """One author's influence state from two: mention counts add, average engagement weighted by them."""
    if not old or not new:
        either = new or old
        return dict(either) if either else None
    n_old, n_new = int(old.get("n", 0)), int(new.get("n", 0))
    n = n_old + n_new
    ewma_old = float(old.get("ewma", old.get("engagement", 0.0)))
    ewma_new = float(new.get("ewma", new.get("engagement", 0.0)))
    ewma = (n_old * ewma_old + n_new * ewma_new) / n if n else 0.0
    followers = new.get("followers") if new.get("followers") is not None else old.get("followers")
    return {"n": n, "ewma": ewma, "engagement": ewma * n / (n + PRIOR_MENTIONS), "followers": followers}


class AuthorMigration:
    def __init__(self, settings: Settings, client: Elasticsearch, *, dry_run: bool, source: str,
                 progress: Callable[[str], None] = lambda message: None):
        self.settings, self.client, self.dry_run, self.source, self.progress = settings, client, dry_run, source, progress
        self.es = settings.elasticsearch
        self.consents = ConsentService(settings, client, sleep=lambda s: None)

    def run(self, aliases: Iterable[Alias]) -> MigrationReport:
        aliases = list(dict.fromkeys(aliases))  # the raw topic names an author once per mention
        report = MigrationReport(dry_run=self.dry_run, aliases=len(aliases))
        plan = plan_moves(pseudonymizer_from_settings(self.settings), aliases)
        report.candidates, report.ambiguous = len(plan.moves), plan.ambiguous
        self.progress(f"{len(aliases)} spelling(s) read; {len(plan.moves)} pseudonym(s) differ from the canonical one"
                      + (f", {plan.ambiguous} ambiguous (left alone)" if plan.ambiguous else ""))
        moves = self._erasures(plan.moves, report)
        linked = self._consents(moves, report)
        report.mentions = self._move(self.es.mentions_index, AUTHOR_FIELD, MOVE_MENTION_SCRIPT, moves, _move_mention)
        self.progress(f"mentions: {report.mentions} {'to move' if self.dry_run else 'moved'}")
        report.cases = self._move(self.es.cases_index, CASE_AUTHOR_FIELD, MOVE_CASE_SCRIPT, moves, _move_case)
        self.progress(f"cases: {report.cases} {'to move' if self.dry_run else 'moved'}")
        if not self.dry_run:
            for new, contact_id in linked.items():  # the moved documents' CRM link follows the resulting consent
                if contact_id:
                    self.consents._link(new, contact_id)
                else:
                    self.consents._unlink(new)
        report.influence = self._influence(moves)
        self.progress(f"influence states: {report.influence} {'to merge' if self.dry_run else 'merged'}")
        return report

    # -- erasures ------------------------------------------------------------------------------

    def _found(self, index: str, ids: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for chunk in _chunks(ids):
            for doc in self.client.mget(index=index, ids=chunk)["docs"]:
                if doc.get("found"):
                    found[doc["_id"]] = doc["_source"]
        return found

    def _erasures(self, moves: dict[str, tuple[str, str]], report: MigrationReport) -> dict[str, tuple[str, str]]:
        """Extends erasures across each old/new pair; returns the moves left for everything else."""
        ids = sorted(set(moves) | {new for new, _ in moves.values()})
        erased = self._found(self.es.erasures_index, ids)
        remaining = {}
        for old, (new, platform) in moves.items():
            if old not in erased and new not in erased:
                remaining[old] = (new, platform)
                continue
            known = erased.get(old) or erased[new]
            missing = [p for p in (old, new) if p not in erased]
            report.erasures_extended += len(missing)
            if self.dry_run:
                continue
            for pseudonym in missing:  # the record first: sinks drop the pseudonym from now on
                record = ErasureRecord(pseudonym=pseudonym, platform=platform, reason=known.get("reason", "data-subject-request"),
                                       requested_by="migrate-authors")
                self.client.index(index=self.es.erasures_index, id=pseudonym, document=record.model_dump(mode="json"),
                                  refresh="wait_for")
                erased[pseudonym] = record.model_dump(mode="json")
            for pseudonym in (old, new):
                report.erased_documents += delete_mentions_of(self.client, self.es.mentions_index, [pseudonym])[0]
                report.erased_documents += delete_mentions_of(self.client, self.es.cases_index, [pseudonym],
                                                              field=CASE_AUTHOR_FIELD)[0]
                self.consents.erase(pseudonym, platform, self.source)
        if report.erasures_extended:
            self.progress(f"erasures: extended to {report.erasures_extended} pseudonym(s)")
        return remaining

    # -- consents ------------------------------------------------------------------------------

    def _consents(self, moves: dict[str, tuple[str, str]], report: MigrationReport) -> dict[str, str | None]:
        """Re-keys consent records; returns new pseudonym -> contact id to link (None: unlink) for
        every author where a consent was involved."""
        records: dict[str, ConsentRecord] = {}
        for key, value in read_whole_topic(self.settings.kafka, self.settings.kafka.topics.consent):
            if key is None:
                continue
            pseudonym = key.decode("utf-8", "replace")
            if value is None:
                records.pop(pseudonym, None)
                continue
            try:
                records[pseudonym] = ConsentRecord.model_validate_json(value)
            except ValueError:
                continue
        ids = sorted(set(moves) | {new for new, _ in moves.values()})
        for pseudonym, source in self._found(self.es.consents_index, ids).items():
            records.setdefault(pseudonym, ConsentRecord.model_validate(source))  # the topic is the truth
        purpose = self.settings.crm.linking_purpose
        linked: dict[str, str | None] = {}
        for old, (new, platform) in moves.items():
            before, current = records.get(old), records.get(new)
            if before is None:
                if current is not None:
                    linked[new] = current.contact_id if current.allows(purpose) else None
                continue
            report.consents += 1
            conflict = current is not None
            report.consent_conflicts += conflict
            kept = before if current is None or before.at > current.at else current
            result = kept.model_copy(update={"pseudonym": new})
            records[new] = result
            records.pop(old, None)
            linked[new] = result.contact_id if result.allows(purpose) else None
            if self.dry_run:
                continue
            if kept is before:
                self.consents._publish(result)
            producer = make_producer(self.settings.kafka)
            try:
                confirm_sent(producer, [producer.send(self.settings.kafka.topics.consent, key=old.encode(), value=None)])
            finally:
                producer.close()
            self.client.options(ignore_status=404).delete(index=self.es.consents_index, id=old, refresh="wait_for")
            what = (f"re-keyed from {old}" + (f"; {new} had a record too, the newer one (of {kept.pseudonym}) kept"
                                               if conflict else "") + " (stimmung migrate-authors)")
            self.consents._audit(ConsentAudit(action="migrate", pseudonym=new, platform=platform,
                                              contact_id=result.contact_id, purposes=list(result.purposes),
                                              source=self.source, evidence=what))
        self.progress(f"consent records: {report.consents} {'to re-key' if self.dry_run else 're-keyed'}"
                      + (f" ({report.consent_conflicts} where both had one: the newer kept)" if report.consent_conflicts else ""))
        return linked

    # -- mentions and cases --------------------------------------------------------------------

    def _move(self, index: str, field_name: str, script: str, moves: dict[str, tuple[str, str]],
              transform: Callable[[dict, dict[str, str]], None]) -> int:
        total = 0
        for chunk in _chunks(sorted(moves)):
            query = {"terms": {field_name: chunk}}
            if self.dry_run:
                self.client.indices.refresh(index=index, ignore_unavailable=True)
                total += int(self.client.count(index=index, query=query, ignore_unavailable=True)["count"])
                continue
            mapping = {old: moves[old][0] for old in chunk}

            def apply(source: dict, mapping: dict[str, str] = mapping) -> None:
                transform(source, mapping)

            total += update_by_query(self.client, index, query, script, apply, {"moves": mapping})
        return total

    # -- influence -----------------------------------------------------------------------------

    def _influence(self, moves: dict[str, tuple[str, str]]) -> int:
        topic = self.settings.kafka.topics.influence
        states: dict[str, Any] = {}
        for key, value in read_whole_topic(self.settings.kafka, topic):
            if key is None:
                continue
            try:
                states[key.decode("utf-8", "replace")] = json.loads(value) if value else None
            except ValueError:  # not a state we wrote: leave it to its key
                continue
        olds = [old for old in moves if states.get(old)]
        if self.dry_run or not olds:
            return len(olds)
        producer = make_producer(self.settings.kafka)
        try:
            sends = []
            for old in olds:
                new = moves[old][0]
                states[new] = merge_influence(states.pop(old), states.get(new))
                sends.append(producer.send(topic, key=new.encode(), value=json.dumps(states[new]).encode()))
                sends.append(producer.send(topic, key=old.encode(), value=None))
            confirm_sent(producer, sends)
        finally:
            producer.close()
        return len(olds)


def _move_mention(source: dict, mapping: dict[str, str]) -> None:
    author = source.get("author") or {}
    if author.get("pseudonym") in mapping:
        author["pseudonym"] = mapping[author["pseudonym"]]


def _move_case(source: dict, mapping: dict[str, str]) -> None:
    if source.get("author_pseudonym") in mapping:
        source["author_pseudonym"] = mapping[source["author_pseudonym"]]
