"""`stimmung stack`: the local stack, real Kafka (KRaft) and Elasticsearch on loopback."""

from __future__ import annotations

import json
import sys

import click

from stimmung.commands.common import Context, say


@click.group()
def stack() -> None:
    """The local stack: real Kafka (KRaft) and Elasticsearch on loopback, no Docker."""


_only = click.option("--only", multiple=True, type=click.Choice(["kafka", "elasticsearch"]),
                     help="Limit to one service (repeatable).")


@stack.command("up")
@_only
@click.pass_obj
def stack_up(obj: Context, only: tuple[str, ...]) -> None:
    """Fetch (first run), start and health-check the services. Idempotent."""
    from stimmung.localstack import LocalStack

    statuses = LocalStack(obj.settings.stack, report=say).up(list(only) or None)
    for st in statuses:
        click.echo(f"{st.name:<14} {st.state:<9} {st.endpoint}")


@stack.command("down")
@_only
@click.pass_obj
def stack_down(obj: Context, only: tuple[str, ...]) -> None:
    """Stop the services (data stays in the state folder), and the demo's background inbox."""
    from stimmung.inbox import background
    from stimmung.localstack import LocalStack

    if not only:  # the inbox needs Elasticsearch: it goes first
        stopped = background.stop(obj.settings.stack.state_dir)
        if stopped:
            click.echo(stopped)
    for line in LocalStack(obj.settings.stack, report=say).down(list(only) or None):
        click.echo(line)


@stack.command("status")
@_only
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def stack_status(obj: Context, only: tuple[str, ...], as_json: bool) -> None:
    """Show each service's state; exit 1 unless all are running."""
    from stimmung.localstack import LocalStack

    statuses = LocalStack(obj.settings.stack).status(list(only) or None)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in statuses], indent=2))
    else:
        for st in statuses:
            click.echo(f"{st.name:<14} {st.state:<9} {st.endpoint}" + (f"  pid {st.pid}" if st.pid else ""))
            if st.detail and st.state != "running":
                click.echo("  " + st.detail.replace("\n", "\n  "))
    if any(s.state != "running" for s in statuses):
        sys.exit(1)
