"""Staff rules on a case (pure logic; the store applies them with optimistic concurrency)."""

from datetime import timedelta

import pytest

from stimmung.pipeline.crm.cases import CaseError, apply_claim, apply_close, apply_reply
from stimmung.schemas.case import Case
from stimmung.schemas.mention import utcnow


def case(**fields) -> Case:
    now = utcnow()
    return Case(case_id="case-1", queue="support", priority="P2", route="complaints", mention_ids=["m1"], platform="x",
                title="Meine Erstattung fehlt",
                mention_count=1, created_at=now - timedelta(minutes=5), updated_at=now,
                first_response_due=now + timedelta(hours=1), resolution_due=now + timedelta(days=2), **fields)


def test_a_claimed_case_is_not_taken_over_silently():
    c = case()
    apply_claim(c, "alice")
    with pytest.raises(CaseError, match="assigned to alice.*--take-over"):
        apply_claim(c, "bob")
    assert c.assignee == "alice"
    apply_claim(c, "bob", take_over=True)
    assert c.assignee == "bob"


def test_only_the_assignee_closes_or_answers_unless_taking_over():
    c = case()
    apply_claim(c, "alice")
    with pytest.raises(CaseError, match="assigned to alice"):
        apply_close(c, "bob")
    with pytest.raises(CaseError, match="assigned to alice"):
        apply_reply(c, "bob", "Wir kümmern uns.")
    assert c.state == "in_progress" and c.resolved_at is None and not c.replies
    apply_close(c, "alice")
    assert c.state == "done" and c.assignee == "alice"


def test_an_empty_reply_is_refused_and_is_no_first_response():
    c = case()
    for text in ("", "   \n"):
        with pytest.raises(CaseError, match="needs text"):
            apply_reply(c, "alice", text)
    assert c.first_response_at is None and not c.replies
    apply_reply(c, "alice", " Erstattung ist angestoßen. ")
    assert c.first_response_s and c.first_response_s >= 300 and c.replies[0].text == "Erstattung ist angestoßen."


def test_claiming_your_own_case_twice_says_so():
    c = case()
    apply_claim(c, "alice")
    with pytest.raises(CaseError, match="already yours"):
        apply_claim(c, "alice")
