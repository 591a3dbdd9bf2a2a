"""`stimmung cases`: the case manager (run) and staff actions on team queues (list, claim, reply, close)."""

from __future__ import annotations

import json

import click

from stimmung.commands.common import Context, es_client, fail
from stimmung.roles import run_role


@click.group()
def cases() -> None:
    """Cases for team queues: the case manager (run) and staff actions (list, claim, reply, close)."""


def _case_store(obj: Context):
    from stimmung.pipeline.crm.cases import CaseStore, ticket_mirror
    from stimmung.pipeline.elastic.indices import ensure_indices

    client = es_client(obj)
    ensure_indices(client, obj.settings.elasticsearch, staff_command=True)
    return CaseStore(client, obj.settings.elasticsearch.cases_index, ticket_mirror(obj.settings))


@cases.command("run")
@click.pass_obj
def cases_run(obj: Context) -> None:
    """The case manager: route enriched mentions into cases, watch SLAs, export response times."""
    from stimmung.pipeline.crm.cases import CaseManager
    from stimmung.pipeline.elastic.indices import ensure_indices

    s = obj.settings
    if not s.crm.routes:
        fail("crm.routes: no routing rules configured; the case manager would never open a case")

    def manager() -> CaseManager:
        from stimmung.roles import until_elasticsearch_answers

        client = es_client(obj)
        until_elasticsearch_answers(ensure_indices, client, s.elasticsearch, what="case manager")
        return CaseManager(s, client)

    run_role(s, manager, [s.kafka.topics.enriched])


@cases.command("list")
@click.option("--queue", default=None)
@click.option("--state", type=click.Choice(["open", "in_progress", "done", "active", "all"]), default="active",
              show_default=True, help="active = open or in progress")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def cases_list(obj: Context, queue: str | None, state: str, limit: int, as_json: bool) -> None:
    """Cases, newest first."""
    filters: list[dict] = []
    if queue:
        filters.append({"term": {"queue": queue}})
    if state == "active":
        filters.append({"terms": {"state": ["open", "in_progress"]}})
    elif state != "all":
        filters.append({"term": {"state": state}})
    found = _case_store(obj).find({"bool": {"filter": filters}}, size=limit)
    if as_json:
        click.echo(json.dumps([c.model_dump(mode="json") for c in found]))
        return
    from rich.console import Console

    from stimmung.tables import cases_table

    Console().print(cases_table(found))


def _case_action(obj: Context, action, as_json: bool, *args, **kwargs) -> None:
    from stimmung.pipeline.crm.cases import CaseError

    try:
        case = action(_case_store(obj), *args, **kwargs)
    except CaseError as err:
        fail(str(err), code=1)
    if as_json:
        click.echo(json.dumps(case.model_dump(mode="json")))
        return
    click.echo(_case_line(case))


def _case_line(case) -> str:
    """One human line: what the case is now, and the times the action set."""
    parts = [f"{case.case_id}: {case.state.replace('_', ' ')}", f"queue {case.queue} ({case.priority})"]
    if case.assignee:
        parts.append(f"assignee {case.assignee}")
    if case.first_response_s is not None:
        parts.append(f"first response after {_duration(case.first_response_s)}")
    if case.resolution_s is not None:
        parts.append(f"resolved after {_duration(case.resolution_s)}")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


_json = click.option("--json", "as_json", is_flag=True, help="The whole case as JSON (for scripts).")
_take_over = click.option("--take-over", is_flag=True, help="Act on a case someone else holds (it becomes yours).")


@cases.command("claim")
@click.argument("case_id")
@click.option("--as", "who", required=True, help="Who takes the case")
@_take_over
@_json
@click.pass_obj
def cases_claim(obj: Context, case_id: str, who: str, take_over: bool, as_json: bool) -> None:
    """Take a case: assigned to you, in progress (a case someone else holds needs --take-over)."""
    from stimmung.pipeline.crm.cases import claim

    _case_action(obj, claim, as_json, case_id, who, take_over=take_over)


@cases.command("reply")
@click.argument("case_id")
@click.option("--as", "who", required=True)
@click.option("--text", required=True, help="What was answered (the first reply sets the first-response time)")
@_take_over
@_json
@click.pass_obj
def cases_reply(obj: Context, case_id: str, who: str, text: str, take_over: bool, as_json: bool) -> None:
    """Record a reply to the customer (not empty; the first one sets the first-response time)."""
    from stimmung.pipeline.crm.cases import reply

    _case_action(obj, reply, as_json, case_id, who, text, take_over=take_over)


@cases.command("close")
@click.argument("case_id")
@click.option("--as", "who", required=True)
@click.option("--text", default=None, help="A closing note or final reply")
@_take_over
@_json
@click.pass_obj
def cases_close(obj: Context, case_id: str, who: str, text: str | None, take_over: bool, as_json: bool) -> None:
    """Close a case (sets the resolution time); only its assignee, or with --take-over."""
    from stimmung.pipeline.crm.cases import close

    _case_action(obj, close, as_json, case_id, who, text, take_over=take_over)
