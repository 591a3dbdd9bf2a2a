"""`stimmung consent`: record, withdraw and show consent to link an author to a CRM contact; serve its API."""

from __future__ import annotations

import json
import logging
import sys

import click

from stimmung.commands.common import Context, fail, say, who
from stimmung.roles import start_role

log = logging.getLogger("stimmung")


@click.group()
def consent() -> None:
    """Consent to link an author's posts to a CRM contact (grant, withdraw, show, serve the API)."""


def _hint(platform: str, handle: str) -> None:
    from stimmung.schemas.identity import key_hint

    hint = key_hint(platform, handle)
    if hint:
        say(f"note: {hint}")


def _consent_service(obj: Context, wait: bool = False):
    from stimmung.kafka import ensure_topics
    from stimmung.pipeline.crm.consent import ConsentService
    from stimmung.pipeline.elastic.client import make_client
    from stimmung.pipeline.elastic.indices import ensure_indices

    s = obj.settings
    client = make_client(s.elasticsearch)
    if wait:  # the API server (a role): rides out a broker or Elasticsearch that is away
        from stimmung.roles import until_elasticsearch_answers

        ensure_topics(s.kafka)
        until_elasticsearch_answers(ensure_indices, client, s.elasticsearch, what="consent API")
    else:  # a one-shot command: fail clearly
        ensure_topics(s.kafka, timeout_s=30)
        ensure_indices(client, s.elasticsearch, staff_command=True)
    return ConsentService(s, client)


@consent.command("grant")
@click.option("--platform", required=True)
@click.option("--handle", required=True, help=("The author on that platform, as typed anywhere: @user@host, a profile URL, "
                                                "an X user id, a Bluesky DID (never stored, only its pseudonym)"))
@click.option("--contact", "contact_id", required=True, help="The CRM contact id")
@click.option("--purpose", "purposes", multiple=True, required=True, type=click.Choice(["service", "profiling", "marketing"]))
@click.option("--evidence", default=None, help="Where the consent is documented (form id, ticket, recording)")
@click.pass_obj
def consent_grant(obj: Context, platform: str, handle: str, contact_id: str, purposes: tuple[str, ...], evidence: str | None) -> None:
    """Record consent: this author may be linked to this contact for these purposes."""
    _hint(platform, handle)
    record = _consent_service(obj).grant(platform, handle, contact_id, list(purposes), who(), evidence)
    click.echo(json.dumps(record.model_dump(mode="json")))


@consent.command("withdraw")
@click.option("--platform", required=True)
@click.option("--handle", required=True)
@click.option("--purpose", "purposes", multiple=True, type=click.Choice(["service", "profiling", "marketing"]),
              help="Withdraw only these purposes (default: all)")
@click.option("--evidence", default=None)
@click.pass_obj
def consent_withdraw(obj: Context, platform: str, handle: str, purposes: tuple[str, ...], evidence: str | None) -> None:
    """Withdraw consent; mentions and cases already indexed are unlinked, and it is audited."""
    _hint(platform, handle)
    record, unlinked = _consent_service(obj).withdraw(platform, handle, who(), list(purposes) or None, evidence)
    if record is None:
        fail("no consent recorded for this author", code=1)
    click.echo(json.dumps({**record.model_dump(mode="json"), "unlinked_documents": unlinked}))


@consent.command("show")
@click.option("--platform", required=True)
@click.option("--handle", required=True)
@click.pass_obj
def consent_show(obj: Context, platform: str, handle: str) -> None:
    """The author's current consent (by pseudonym)."""
    _hint(platform, handle)
    service = _consent_service(obj)
    pseudonym = service.pseudonym(platform, handle)
    record = service.current(pseudonym)
    click.echo(json.dumps(record.model_dump(mode="json") if record else {"pseudonym": pseudonym, "status": "none"}))
    if record is None:
        sys.exit(1)


@consent.command("serve")
@click.pass_obj
def consent_serve(obj: Context) -> None:
    """Serve the consent API for CRM systems (bearer token from crm.api.token[_file])."""
    import asyncio

    from stimmung.config import read_secret
    from stimmung.listening import not_listening_yet, serve_app
    from stimmung.pipeline.crm.consent_api import make_consent_app

    s = obj.settings
    token = read_secret(s.crm.api.token, s.crm.api.token_file, "crm.api.token")
    if not token or len(token) < 16:
        fail("crm.api.token: set a token of at least 16 characters (env or *_file); the API never runs open")
    not_listening_yet()  # the Kafka and Elasticsearch waits below must not make it look ready
    start_role(s, create_topics=False)
    app = make_consent_app(_consent_service(obj, wait=True), token)
    log.info("consent API listening", extra={"host": s.crm.api.host, "port": s.crm.api.port})
    asyncio.run(serve_app(app, s.crm.api.host, s.crm.api.port))
