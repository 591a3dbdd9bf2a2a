"""Rich tables for the staff commands: search hits (`stimmung search`) and case lists (`stimmung cases list`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from rich.table import Table

if TYPE_CHECKING:
    from stimmung.pipeline.elastic.search import SearchResult
    from stimmung.schemas.case import Case

SENTIMENT_COLOURS = {"negative": "red", "positive": "green"}


def search_table(result: SearchResult, query: str | None) -> Table:
    table = Table(title=f"{result.total} mentions" + (f" matching {query!r}" if query else ""), expand=True)
    for column, kw in (("time (UTC)", {"no_wrap": True}), ("platform", {}), ("lang", {}), ("sentiment", {}),
                       ("topics", {}), ("author", {"no_wrap": True}), ("text", {"ratio": 1})):
        table.add_column(column, **kw)
    for hit in result.hits:
        senti = hit.get("sentiment") or {}
        label = senti.get("label", "")
        table.add_row(hit.get("@timestamp", "")[:16].replace("T", " "), hit.get("platform", ""), hit.get("language", ""),
                      f"[{SENTIMENT_COLOURS.get(label, 'white')}]{label}[/] {senti.get('score', 0):.2f}" if label else "",
                      ", ".join(hit.get("topic_labels", [])), (hit.get("author") or {}).get("pseudonym", "")[:12],
                      (hit.get("text") or "").replace("\n", " ")[:280])
    return table


def cases_table(found: Sequence[Case]) -> Table:
    table = Table(title=f"{len(found)} case(s)")
    for col in ("case", "queue", "prio", "state", "assignee", "brand", "mentions", "SLA", "opened", "title"):
        table.add_column(col)
    for c in found:
        table.add_row(c.case_id, c.queue, c.priority, c.state, c.assignee or "–", c.brand or "–", str(c.mention_count),
                      ",".join(c.sla_breached) or "ok", f"{c.created_at:%Y-%m-%d %H:%M}", c.title[:60])
    return table
