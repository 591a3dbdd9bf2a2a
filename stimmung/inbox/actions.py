"""Staff actions on a case, as pure changes of the Case document.

Each action checks its preconditions, changes the case, appends one history entry and returns
the ticket-mirror event name. A refused action raises ``ActionRefused`` with a sentence for the
person who tried (the inbox shows it next to what they typed). Response times follow the CLI's
rules (stimmung.pipeline.crm.cases): the first reply sets ``first_response_*``, closing sets
``resolution_*``; reopening clears the resolution so a second close is measured again.
"""

from __future__ import annotations

from datetime import datetime

from stimmung.schemas.case import Case, CaseEvent, Note, Reply
from stimmung.schemas.mention import utcnow

MAX_TEXT = 5000


class ActionRefused(Exception):
    """The action does not apply to the case as it is now; the message says why."""


def _text(text: str | None, what: str, required: bool = True) -> str | None:
    text = (text or "").strip()
    if not text:
        if required:
            raise ActionRefused(f"{what} is empty")
        return None
    if len(text) > MAX_TEXT:
        raise ActionRefused(f"{what} is {len(text)} characters long; at most {MAX_TEXT} fit")
    return text


def _not_closed(case: Case) -> None:
    if case.state == "done":
        raise ActionRefused(f"{case.case_id} is closed; reopen it first")


def _log(case: Case, who: str, action: str, detail: str | None, now: datetime) -> None:
    case.history.append(CaseEvent(at=now, by=who, action=action, detail=detail[:500] if detail else None))


def claim(case: Case, who: str, now: datetime | None = None) -> str:
    now = now or utcnow()
    _not_closed(case)
    if case.assignee == who and case.state == "in_progress":
        raise ActionRefused(f"you already have {case.case_id}")
    if case.assignee and case.assignee != who and case.state == "in_progress":
        raise ActionRefused(f"{case.assignee} has already claimed {case.case_id}")
    case.assignee, case.state = who, "in_progress"
    case.claimed_at = case.claimed_at or now
    _log(case, who, "claimed", None, now)
    return "claimed"


def note(case: Case, who: str, text: str | None, now: datetime | None = None) -> str | None:
    now = now or utcnow()
    body = _text(text, "the note")
    case.notes.append(Note(by=who, at=now, text=body))
    _log(case, who, "noted", None, now)
    return None  # internal: not mirrored to the ticketing system


def reply(case: Case, who: str, text: str | None, now: datetime | None = None) -> str:
    now = now or utcnow()
    _not_closed(case)
    body = _text(text, "the reply")
    case.replies.append(Reply(by=who, at=now, text=body))
    if case.first_response_at is None:
        case.first_response_at = now
        case.first_response_s = (now - case.created_at).total_seconds()
    case.assignee = case.assignee or who
    case.state = "in_progress"
    _log(case, who, "replied", None, now)
    return "replied"


def close(case: Case, who: str, text: str | None = None, now: datetime | None = None) -> str:
    now = now or utcnow()
    if case.state == "done":
        raise ActionRefused(f"{case.case_id} is already closed")
    final = _text(text, "the closing reply", required=False)
    if final:
        case.replies.append(Reply(by=who, at=now, text=final))
        if case.first_response_at is None:
            case.first_response_at, case.first_response_s = now, (now - case.created_at).total_seconds()
    case.state, case.resolved_at = "done", now
    case.resolution_s = (now - case.created_at).total_seconds()
    case.assignee = case.assignee or who
    _log(case, who, "closed", None, now)
    return "closed"


def reopen(case: Case, who: str, reason: str | None = None, now: datetime | None = None) -> str:
    now = now or utcnow()
    if case.state != "done":
        raise ActionRefused(f"{case.case_id} is not closed")
    case.state = "in_progress" if case.assignee else "open"
    case.resolved_at, case.resolution_s = None, None
    # the next close is a new resolution time for the histogram
    case.observed = [k for k in case.observed if k != "resolution"]
    _log(case, who, "reopened", _text(reason, "the reason", required=False), now)
    return "reopened"


def assign(case: Case, who: str, colleague: str, members: list[str], now: datetime | None = None) -> str:
    """Give the case to a colleague of its team."""
    now = now or utcnow()
    _not_closed(case)
    colleague = colleague.strip()
    if colleague not in members:
        raise ActionRefused(f"{colleague or 'nobody'} is not in the {case.queue} team")
    if case.assignee == colleague:
        raise ActionRefused(f"{case.case_id} is already assigned to {colleague}")
    case.assignee, case.state = colleague, "in_progress"
    case.claimed_at = case.claimed_at or now
    _log(case, who, "assigned", f"to {colleague}", now)
    return "assigned"


def move(case: Case, who: str, team: str, teams: list[str], now: datetime | None = None) -> str:
    """Hand the case to another team's queue: open there, nobody assigned."""
    now = now or utcnow()
    _not_closed(case)
    if team not in teams:
        raise ActionRefused(f"there is no team {team!r}")
    if team == case.queue:
        raise ActionRefused(f"{case.case_id} is already in the {team} queue")
    previous = case.queue
    case.queue, case.assignee, case.state = team, None, "open"
    _log(case, who, "moved", f"from {previous} to {team}", now)
    return "moved"
