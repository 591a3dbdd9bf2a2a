"""Output of the staff commands: search hits as a table, CSV, JSON or NDJSON (`stimmung search`), case
lists (`stimmung cases list`), dead letters (`stimmung deadletter list`).

Times are shown in one display time zone (UTC unless ``--tz``): the index keeps each post's own
UTC offset, which made a "time (UTC)" column show local times. The search table fits the width
it is given: below ``WIDE_FROM`` columns it keeps time, platform, sentiment and the text (wrapped)
and leaves topics, language and author to ``--wide``, instead of squeezing every column to "…".
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone, tzinfo
from typing import IO, TYPE_CHECKING, Any, Iterable, Sequence

from rich.table import Table

if TYPE_CHECKING:
    from stimmung.pipeline.deadletters import StoredLetter
    from stimmung.pipeline.elastic.search import SearchResult
    from stimmung.schemas.case import Case

SENTIMENT_COLOURS = {"negative": "red", "positive": "green"}
WIDE_FROM = 120  # columns: from here on every column fits without squeezing the text
# What a CSV export holds by default (--fields), in this order; the trained heads' figures on request.
EXPORT_FIELDS = ("time", "mention_id", "platform", "language", "sentiment", "sentiment_score", "topics", "brands",
                 "author", "followers", "influence", "likes", "shares", "replies", "url", "text")
OPTIONAL_FIELDS = ("relevance", "complaint", "complaint_probability")


def display_zone(name: str | None) -> tzinfo:
    """``Europe/Berlin``, ``UTC`` ... -> a tzinfo; an unknown name is a ValueError naming it."""
    if not name or name.upper() in ("UTC", "Z"):
        return timezone.utc
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"--tz {name!r}: not a time zone (use an IANA name such as Europe/Berlin, or UTC)") from None


def zone_label(zone: tzinfo) -> str:
    return "UTC" if zone is timezone.utc else str(zone)


def local_time(stamp: str | None, zone: tzinfo, seconds: bool = False) -> str:
    """An ISO timestamp with any offset -> ``YYYY-MM-DD HH:MM`` in the display zone."""
    if not stamp:
        return ""
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def search_table(result: SearchResult, query: str | None, zone: tzinfo = timezone.utc, width: int = WIDE_FROM) -> Table:
    """The hits for a console ``width`` columns wide (``--wide`` passes a large width)."""
    wide = width >= WIDE_FROM
    title = f"{result.total} mentions" + (f" matching {query!r}" if query else "")
    if result.total > len(result.hits):
        title += f" (newest {len(result.hits)}; --limit for more)"
    table = Table(title=title, expand=True, caption=None if wide else "topics, language, author: --wide")
    table.add_column(f"time ({zone_label(zone)})", no_wrap=True, min_width=16)
    table.add_column("platform", no_wrap=True)
    if wide:
        table.add_column("lang", no_wrap=True)
    table.add_column("sentiment", no_wrap=True)
    if wide:
        table.add_column("topics")
        table.add_column("author", no_wrap=True)
    table.add_column("text", ratio=1, min_width=20, overflow="fold")
    for hit in result.hits:
        senti = hit.get("sentiment") or {}
        label = senti.get("label", "")
        colour = SENTIMENT_COLOURS.get(label, "white")
        sentiment = (f"[{colour}]{label}[/] {senti.get('score', 0):.2f}" if wide else f"[{colour}]{label}[/]") if label else ""
        text = (hit.get("text") or "").replace("\n", " ")
        row = [local_time(hit.get("@timestamp"), zone), hit.get("platform", "")]
        if wide:
            row += [hit.get("language", ""), sentiment, ", ".join(hit.get("topic_labels", [])),
                    (hit.get("author") or {}).get("pseudonym", "")[:12], text[:500]]
        else:
            row += [sentiment, text[:280]]
        table.add_row(*row)
    return table


def export_row(hit: dict[str, Any], zone: tzinfo) -> dict[str, Any]:
    """One hit flattened to the EXPORT_FIELDS (time as ISO 8601 in the display zone)."""
    senti, author, engagement = hit.get("sentiment") or {}, hit.get("author") or {}, hit.get("engagement") or {}
    complaint = hit.get("complaint") or {}
    stamp = hit.get("@timestamp")
    iso = ""
    if stamp:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        iso = (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).astimezone(zone).isoformat()
    return {"time": iso, "mention_id": hit.get("mention_id", ""), "platform": hit.get("platform", ""),
            "language": hit.get("language", ""), "sentiment": senti.get("label", ""),
            "sentiment_score": senti.get("score", ""), "topics": "|".join(hit.get("topic_labels", [])),
            "brands": "|".join(hit.get("brand_names", [])), "author": author.get("pseudonym", ""),
            "followers": author.get("follower_count", ""), "influence": author.get("influence", ""),
            "likes": engagement.get("likes", ""), "shares": engagement.get("shares", ""),
            "replies": engagement.get("replies", ""), "url": hit.get("url") or "", "text": hit.get("text") or "",
            "relevance": _blank_if_none(hit.get("relevance")), "complaint": complaint.get("label", ""),
            "complaint_probability": _blank_if_none(complaint.get("probability"))}


def _blank_if_none(value: Any) -> Any:
    return "" if value is None else value


def parse_fields(spec: str | None) -> list[str]:
    """``time,text,sentiment`` -> the list; an unknown name is a ValueError listing the known ones."""
    if not spec:
        return list(EXPORT_FIELDS)
    fields = [f.strip() for f in spec.split(",") if f.strip()]
    unknown = [f for f in fields if f not in EXPORT_FIELDS + OPTIONAL_FIELDS]
    if unknown or not fields:
        raise ValueError(f"--fields: unknown {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(EXPORT_FIELDS + OPTIONAL_FIELDS)}")
    return fields


def write_csv(hits: Iterable[dict[str, Any]], out: IO[str], fields: Sequence[str], zone: tzinfo) -> int:
    writer = csv.DictWriter(out, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    n = 0
    for hit in hits:
        writer.writerow(export_row(hit, zone))
        n += 1
    return n


def write_ndjson(hits: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """The indexed documents as they are (times with the post's own UTC offset), one per line."""
    n = 0
    for hit in hits:
        out.write(json.dumps(hit, ensure_ascii=False) + "\n")
        n += 1
    return n


def write_json(total: int, sentiment: dict[str, int], discover_url: str | None, hits: Iterable[dict[str, Any]],
               out: IO[str]) -> int:
    """One JSON object: total, sentiment mix, Discover link and the mentions (the former --json shape)."""
    mentions = list(hits)
    json.dump({"total": total, "sentiment": sentiment, "discover_url": discover_url, "mentions": mentions},
              out, ensure_ascii=False, indent=2)
    out.write("\n")
    return len(mentions)


def cases_table(found: Sequence[Case]) -> Table:
    table = Table(title=f"{len(found)} case(s)")
    for col in ("case", "queue", "prio", "state", "assignee", "brand", "mentions", "SLA", "opened", "title"):
        table.add_column(col)
    for c in found:
        table.add_row(c.case_id, c.queue, c.priority, c.state, c.assignee or "–", c.brand or "–", str(c.mention_count),
                      ",".join(c.sla_breached) or "ok", f"{c.created_at:%Y-%m-%d %H:%M}", c.title[:60])
    return table


def dead_letters_table(letters: Sequence[StoredLetter], total: int) -> Table:
    title = f"{total} dead letter(s)" + (f", newest {len(letters)} shown" if total > len(letters) else "")
    table = Table(title=title, expand=True)
    table.add_column("id", no_wrap=True)
    table.add_column("failed (UTC)", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("error", no_wrap=True)
    table.add_column("source", overflow="fold")
    table.add_column("reason", ratio=1, overflow="fold")
    for letter in letters:
        table.add_row(letter.id, f"{letter.failed_at:%Y-%m-%d %H:%M}", letter.stage, letter.error_type,
                      letter.source_position, letter.reason[:300])
    return table
