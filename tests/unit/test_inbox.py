"""The inbox's pure parts: case transitions, SLA clock, CSV export, charts, accounts and rights,
queue filters."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from stimmung.config import ConfigError, load_settings
from stimmung.inbox import actions
from stimmung.inbox.accounts import Directory, User, hash_password
from stimmung.inbox.present import cases_csv, duration, line_chart, sla_clock, stacked_bars
from stimmung.inbox.store import BadQuery, CaseQuery, parse_version
from stimmung.schemas.case import Case

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


def case(**changes) -> Case:
    base = dict(case_id="case-1", queue="support", priority="P2", route="complaints", platform="mastodon",
                title="Nordbahn: wo bleibt meine Erstattung?", created_at=T0, updated_at=T0,
                first_response_due=T0 + timedelta(hours=1), resolution_due=T0 + timedelta(days=2))
    return Case(**{**base, **changes})


def test_claim_then_a_colleague_is_refused_by_name():
    c = case()
    assert actions.claim(c, "alice", T0 + timedelta(minutes=5)) == "claimed"
    assert c.state == "in_progress" and c.assignee == "alice" and c.claimed_at == T0 + timedelta(minutes=5)
    with pytest.raises(actions.ActionRefused, match="alice has already claimed"):
        actions.claim(c, "bob")
    with pytest.raises(actions.ActionRefused, match="you already have"):
        actions.claim(c, "alice")


def test_reply_sets_the_first_response_once_and_close_the_resolution():
    c = case()
    actions.reply(c, "alice", "Wir prüfen das.", T0 + timedelta(minutes=10))
    actions.reply(c, "alice", "Erstattung ist raus.", T0 + timedelta(minutes=30))
    assert c.first_response_s == 600 and c.state == "in_progress" and len(c.replies) == 2
    actions.close(c, "alice", None, T0 + timedelta(hours=2))
    assert c.state == "done" and c.resolution_s == 7200
    with pytest.raises(actions.ActionRefused, match="already closed"):
        actions.close(c, "alice")
    with pytest.raises(actions.ActionRefused, match="reopen it first"):
        actions.reply(c, "alice", "noch was")
    assert [h.action for h in c.history] == ["replied", "replied", "closed"]


def test_reopen_clears_the_resolution_so_the_next_close_is_measured_again():
    c = case(observed=["first_response", "resolution"])
    actions.claim(c, "alice", T0)
    actions.close(c, "alice", "Erledigt", T0 + timedelta(hours=1))
    actions.reopen(c, "bob", "Kundin meldet sich erneut", T0 + timedelta(hours=3))
    assert c.state == "in_progress" and c.resolved_at is None and c.resolution_s is None
    assert c.observed == ["first_response"] and c.history[-1].detail == "Kundin meldet sich erneut"
    with pytest.raises(actions.ActionRefused, match="not closed"):
        actions.reopen(c, "bob")


def test_notes_are_internal_and_checked():
    c = case()
    assert actions.note(c, "alice", "  Ticket 4711  ") is None  # nothing to mirror
    assert c.notes[0].text == "Ticket 4711" and c.replies == []
    with pytest.raises(actions.ActionRefused, match="the note is empty"):
        actions.note(c, "alice", "   ")
    with pytest.raises(actions.ActionRefused, match="at most 5000"):
        actions.note(c, "alice", "x" * 5001)
    assert len(c.notes) == 1


def test_assign_only_to_team_members_and_move_to_known_teams():
    c = case()
    with pytest.raises(actions.ActionRefused, match="leo is not in the support team"):
        actions.assign(c, "alice", "leo", ["alice", "bob"])
    actions.assign(c, "alice", "bob", ["alice", "bob"])
    assert c.assignee == "bob" and c.history[-1].detail == "to bob"
    with pytest.raises(actions.ActionRefused, match="no team 'sales'"):
        actions.move(c, "alice", "sales", ["support", "legal"])
    actions.move(c, "alice", "legal", ["support", "legal"])
    assert (c.queue, c.assignee, c.state) == ("legal", None, "open")


@pytest.mark.parametrize("minutes, status, label", [
    (10, "ok", "50m left"), (50, "warn", "10m left"), (75, "breached", "overdue 15m")])
def test_sla_clock_colours_as_the_target_nears_and_passes(minutes, status, label):
    clock = sla_clock(case(), T0 + timedelta(minutes=minutes), 0.75)
    assert (clock.status, clock.label) == (status, label)


def test_sla_clock_after_the_first_response():
    on_time = case(first_response_at=T0 + timedelta(minutes=20), first_response_s=1200.0)
    late = case(first_response_at=T0 + timedelta(minutes=90), first_response_s=5400.0)
    assert sla_clock(on_time, T0 + timedelta(days=1)).status == "met"
    assert sla_clock(late, T0 + timedelta(days=1)) .label == "answered late, in 1h 30m"


def test_durations_read_well():
    assert [duration(s) for s in (5, 125, 3600 * 3 + 300, 86400 * 3 + 7200)] == ["5s", "2m", "3h 5m", "3d 2h"]


def test_csv_export_quotes_and_defuses_formulas():
    rows = list(csv.reader(io.StringIO("".join(cases_csv([
        case(title='=HYPERLINK("http://x";"klick")', topics=["complaint", "refund"]),
        case(case_id="case-2", title="Komma, \"Zitat\"\nZeile", brand="-1+1", influence=-3.5)])))))
    header, first, second = rows
    assert header[0] == "case_id" and len(rows) == 3
    assert first[header.index("title")] == "'=HYPERLINK(\"http://x\";\"klick\")"
    assert first[header.index("topics")] == "complaint;refund"
    assert second[header.index("title")] == "Komma, \"Zitat\"\nZeile"
    assert second[header.index("brand")] == "'-1+1" and second[header.index("influence")] == "-3.5"


def test_charts_are_wellformed_svg_with_escaped_labels():
    bars = stacked_bars("Cases <per> queue", {"support & co": {"open": 3, "done": 1}, "legal": {}},
                        ["open", "in_progress", "done"], {"open": "#f00", "in_progress": "#0f0", "done": "#00f"})
    root = ET.fromstring(bars)
    assert root.tag.endswith("svg") and len([e for e in root.iter() if e.tag.endswith("rect")]) == 2 + 3
    lines = line_chart("Median", ["2026-11-23", "2026-11-24"], {"support": [12.0, None], "pr": [3.0, 4.5]})
    assert ET.fromstring(lines).tag.endswith("svg") and "support: 12.0 min" in lines


def settings_with(tmp_path, accounts, teams=("pr",), accounts_file=None):
    config = {"crm": {"routes": [{"name": "complaints", "queue": "support"}, {"name": "legal", "queue": "legal"}]},
              "inbox": {"teams": list(teams), "accounts": accounts}}
    if accounts_file:
        config["inbox"]["accounts_file"] = str(accounts_file)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_settings(path)


def test_passwords_are_argon2id_and_checked(tmp_path):
    h = hash_password("correct horse battery")
    assert h.startswith("$argon2id$")
    with pytest.raises(ValueError, match="at least 12"):
        hash_password("short")
    d = Directory(settings_with(tmp_path, [{"username": "alice", "password_hash": h, "teams": {"support": "agent"}},
                                           {"username": "sso-only", "teams": {"legal": "agent"}}]))
    assert d.teams == ["legal", "pr", "support"]
    assert d.authenticate("alice", "correct horse battery").teams == {"support": "agent"}
    assert d.authenticate("alice", "wrong") is None and d.authenticate("nobody", "correct horse battery") is None
    assert d.authenticate("sso-only", "") is None  # no password: OIDC only


def test_accounts_name_known_teams_and_come_from_a_file_too(tmp_path):
    with pytest.raises(ConfigError, match="unknown team"):
        Directory(settings_with(tmp_path, [{"username": "x", "teams": {"sales": "agent"}}]))
    extra = tmp_path / "accounts.yaml"
    extra.write_text(yaml.safe_dump([{"username": "leo", "teams": {"legal": "lead"}}]))
    d = Directory(settings_with(tmp_path, [], accounts_file=extra))
    assert d.user("leo").leads(d.teams) == ["legal"] and d.members("legal") == ["leo"]
    extra.write_text(yaml.safe_dump([{"username": "leo", "teams": {"legal": "boss"}}]))
    with pytest.raises(ConfigError, match="accounts_file"):
        Directory(settings_with(tmp_path, [], accounts_file=extra))


def test_rights_from_oidc_claims_or_the_local_account(tmp_path):
    d = Directory(settings_with(tmp_path, [{"username": "lena", "teams": {"support": "lead"}}]))
    u = d.from_claims({"preferred_username": "max", "groups": ["support:agent", "legal:lead", "sales:agent", "x"]},
                      "preferred_username", "groups")
    assert u.teams == {"support": "agent", "legal": "lead"} and not u.admin and u.via == "oidc"
    assert d.from_claims({"preferred_username": "root", "groups": "admin"}, "preferred_username", "groups").admin
    assert d.from_claims({"preferred_username": "lena"}, "preferred_username", "groups").teams == {"support": "lead"}
    assert d.from_claims({"preferred_username": "stranger"}, "preferred_username", "groups") is None


def test_a_user_sees_only_their_queues_and_admins_all():
    agent = User("alice", "Alice", {"support": "agent"})
    admin = User("root", "Root", {}, admin=True)
    teams = ["legal", "pr", "support"]
    assert agent.queues(teams) == ["support"] and not agent.can_work("legal") and agent.leads(teams) == []
    assert admin.queues(teams) == teams and admin.can_work("legal") and admin.leads(teams) == teams
    assert User.from_session(agent.to_session()) == agent


def test_queue_filters_always_restrict_to_the_users_queues_and_reject_bad_values():
    q = CaseQuery(queues=["support"], priority="P1", topic="refund", assignee="alice")
    q.check()
    assert q.filters()[0] == {"terms": {"queue": ["support"]}}
    assert {"terms": {"state": ["open", "in_progress"]}} in q.filters() and {"term": {"topics": "refund"}} in q.filters()
    for bad, message in ((dict(state="closed"), "state"), (dict(priority="P0"), "priority"),
                         (dict(q='"unclosed'), "search"), (dict(page=0), "page"), (dict(sort="random"), "sort")):
        with pytest.raises(BadQuery, match=message):
            CaseQuery(queues=["support"], **bad).check()


def test_versions_round_trip_and_garbage_is_refused():
    assert parse_version("12.3.4") == (12, 3, 4)
    for bad in (None, "", "12.3", "a.b.c"):
        with pytest.raises(BadQuery):
            parse_version(bad)


def test_hash_password_command_prompts_twice_and_refuses_short_passwords():
    from argon2 import PasswordHasher
    from click.testing import CliRunner

    from stimmung.commands.inbox import inbox

    done = CliRunner().invoke(inbox, ["hash-password"], input="correct horse battery\ncorrect horse battery\n")
    assert done.exit_code == 0
    hashed = done.output.strip().splitlines()[-1]
    assert PasswordHasher().verify(hashed, "correct horse battery")
    short = CliRunner().invoke(inbox, ["hash-password"], input="short\nshort\n")
    assert short.exit_code == 2 and "at least 12" in short.output


@pytest.mark.parametrize("value, shown", [
    (True, "yes"), (False, "no"), (0.8731, "0.87"), ("high", "high"),
    ({"label": "complaint", "score": 0.91}, "complaint 0.91"), ({"is_complaint": True, "probability": 0.7}, "yes 0.70"),
    ({"score": 0.42}, "0.42"), (None, None), ({}, None), ([], None),
])
def test_enrichment_fields_are_shown_whatever_shape_they_have(value, shown):
    from stimmung.inbox.present import enrichment_value

    assert enrichment_value(value) == shown


def test_the_case_page_shows_complaint_and_relevance_only_when_the_mention_has_them():
    """Mentions indexed before the enricher had these fields lack them: no line, no error."""
    from pathlib import Path

    from jinja2 import Environment, FileSystemLoader

    import stimmung.inbox.app as app_module
    from stimmung.inbox.present import enrichment_value, sla_clock
    from stimmung.inbox.store import Versioned

    env = Environment(loader=FileSystemLoader(str(Path(app_module.__file__).parent / "templates")), autoescape=True)
    env.globals.update(duration=duration, enrichment_value=enrichment_value)
    c = case(mention_ids=["m1", "m2"])
    base_mention = {"mention_id": "m1", "text": "Nordbahn, wo bleibt die Erstattung?", "platform": "mastodon",
                    "created_at": "2026-11-24T09:00:00Z", "sentiment": {"label": "negative", "score": 0.9}}
    enriched = {**base_mention, "mention_id": "m2", "complaint": {"label": "complaint", "score": 0.93}, "relevance": 0.81}
    html = env.get_template("case.html").render(
        c=c, v=Versioned(c, 3, 1), clock=sla_clock(c, T0), mentions=[base_mention, enriched], alerts=[],
        members=["alice"], teams=["support", "legal"], kept={}, kept_action=None, error=None, user=None, csrf="t",
        flash=[], queues=[], leads=[])
    assert html.count('class="enrichment"') == 2
    assert 'data-field="complaint">complaint 0.93<' in html and 'data-field="relevance">relevance 0.81<' in html
    plain = env.get_template("case.html").render(
        c=c, v=Versioned(c, 3, 1), clock=sla_clock(c, T0), mentions=[base_mention], alerts=[], members=[], teams=[],
        kept={}, kept_action=None, error=None, user=None, csrf="t", flash=[], queues=[], leads=[])
    assert 'class="enrichment"' not in plain
