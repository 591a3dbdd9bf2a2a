"""The `stimmung` command: one entry point, a subcommand per role.

A thin shell: the root group and its error handling; every command lives in a module of
``stimmung.commands``. Command bodies import their heavy dependencies (torch, Faust,
Elasticsearch) inside the function, so `stimmung --help` or `stimmung config` never load them.
"""

from __future__ import annotations

import click

from stimmung.commands import (
    brands,
    cases,
    consent,
    corrections,
    deadletter,
    demo,
    identity,
    inbox,
    kibana,
    lag,
    models,
    roles,
    schemas,
    search,
    setup,
    sources,
    stack,
)
from stimmung.commands.common import Context, fail
from stimmung.config import ConfigError


class _Group(click.Group):
    """Turns known user-facing errors into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        from stimmung.kafka import KafkaUnavailable
        from stimmung.localstack import StackError

        try:
            return super().invoke(ctx)
        except (ConfigError, StackError, KafkaUnavailable) as err:
            fail(str(err))
        except Exception as err:  # noqa: BLE001 - only services' errors are translated; the rest re-raised
            message = service_error(err, ctx.obj)
            if message is None:
                raise
            fail(message, code=1)


def service_error(err: Exception, obj: Context | None) -> str | None:
    """One line for an unreachable or refusing Elasticsearch or Kafka, or None for other errors."""
    import elastic_transport
    from elasticsearch import AuthenticationException, AuthorizationException
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    settings = obj._settings if obj is not None else None
    es_url = settings.elasticsearch.url if settings else "elasticsearch.url"
    brokers = settings.kafka.bootstrap_servers if settings else "kafka.bootstrap_servers"
    if isinstance(err, (AuthenticationException, AuthorizationException)):
        return (f"elasticsearch at {es_url} refused the credentials ({err.status_code}): check "
                "elasticsearch.api_key / username / password")
    if isinstance(err, (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout)):
        return (f"elasticsearch is not reachable at {es_url} ({type(err).__name__}); is it running "
                "(`stimmung stack status`) and is elasticsearch.url right?")
    if isinstance(err, (KafkaConnectionError, KafkaTimeoutError)):
        return (f"kafka is not reachable at {brokers} ({type(err).__name__}); is it running "
                "(`stimmung stack status`) and is kafka.bootstrap_servers right?")
    return None


@click.group(cls=_Group)
@click.option("--config", "config", envvar="STIMMUNG_CONFIG", type=click.Path(dir_okay=False),
              help="YAML settings file (also STIMMUNG_CONFIG).")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default=None)
@click.option("--log-format", type=click.Choice(["json", "text"]), default=None)
@click.version_option(package_name="stimmung")
@click.pass_context
def main(ctx: click.Context, config: str | None, log_level: str | None, log_format: str | None) -> None:
    """Stimmung: streaming social listening for social CRM."""
    ctx.obj = Context(config, log_level, log_format)


# In the order `stimmung --help` lists them (click sorts by name; this order is for the reader).
for command in (
    schemas.show_config, schemas.schemas, models.models, stack.stack, setup.topics, setup.setup,
    sources.import_file, sources.connect, sources.webhook,
    roles.privacy_worker, roles.worker, roles.alerting, roles.sink,
    consent.consent, cases.cases, inbox.inbox, search.search_cmd, search.erase_cmd, search.migrate_indices,
    deadletter.deadletter, lag.lag,
    brands.brands,
    corrections.correct, corrections.corrections,
    identity.migrate_authors,
    kibana.kibana, demo.demo,
):
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
