"""`stimmung inbox`: the case inbox web app (and `stimmung inbox hash-password` for accounts)."""

from __future__ import annotations

import logging
import sys

import click

log = logging.getLogger("stimmung")


@click.group("inbox", invoke_without_command=True)
@click.option("--host", default=None, help="Listen address (default inbox.host)")
@click.option("--port", type=int, default=None, help="Listen port (default inbox.port)")
@click.pass_context
def inbox(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the case inbox: team queues, case detail, actions, lead view (web app)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from stimmung.config import ConfigError
    from stimmung.inbox.app import make_app
    from stimmung.metrics import serve
    from stimmung.pipeline.elastic.client import make_client
    from stimmung.pipeline.elastic.indices import ensure_indices

    s = ctx.obj.settings
    try:
        client = make_client(s.elasticsearch)
        ensure_indices(client, s.elasticsearch)
        app = make_app(s, client)
    except ConfigError as err:
        click.secho(f"error: {err}", fg="red", err=True)
        sys.exit(2)
    serve(s.metrics.port, s.metrics.host)  # /metrics, /healthz, /readyz like every role
    host, port = host or s.inbox.host, port or s.inbox.port
    log.info("inbox listening", extra={"host": host, "port": port, "teams": app.state.inbox.directory.teams})
    click.echo(f"inbox: http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=True, server_header=False)


@inbox.command("hash-password")
def hash_password_cmd() -> None:
    """Read a password (prompted, not echoed) and print its Argon2id hash for an account."""
    from stimmung.inbox.accounts import hash_password

    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        click.echo(hash_password(password))
    except ValueError as err:
        click.secho(f"error: {err}", fg="red", err=True)
        sys.exit(2)


@inbox.command("stop")
@click.pass_obj
def stop_cmd(obj) -> None:
    """Stop the inbox that `stimmung demo` started in the background (also done by `stack down`)."""
    from stimmung.inbox import background

    click.echo(background.stop(obj.settings.stack.state_dir) or "inbox: no background inbox was started")
