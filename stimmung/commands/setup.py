"""`stimmung topics` and `stimmung setup`: prepare a cluster (topics, index templates, Kibana objects)."""

from __future__ import annotations

import time

import click

from stimmung.commands.common import Context, fail, say


@click.command("topics")
@click.pass_obj
def topics(obj: Context) -> None:
    """Create the configured topics if they are missing."""
    from stimmung.kafka import ensure_topics

    created = ensure_topics(obj.settings.kafka, timeout_s=30)
    click.echo(f"created: {', '.join(created)}" if created else "all topics exist")


@click.command("setup")
@click.option("--kibana/--no-kibana", "with_kibana", default=None,
              help="Import the Kibana saved objects too (default: when kibana.url is set).")
@click.option("--wait", default=30.0, show_default=True,
              help="Seconds to wait for Kafka and Elasticsearch to answer (the Helm hook and Compose use 600).")
@click.pass_obj
def setup(obj: Context, with_kibana: bool | None, wait: float) -> None:
    """Prepare a cluster: topics, Elasticsearch templates/lifecycle/indices, Kibana objects.

    Idempotent; the Helm chart runs it as a pre-install/pre-upgrade hook Job."""
    from elasticsearch import TransportError

    from stimmung.kafka import KafkaUnavailable, ensure_topics
    from stimmung.kibana import KibanaError, import_objects, objects_for
    from stimmung.pipeline.elastic.client import make_client
    from stimmung.pipeline.elastic.indices import ensure_indices

    s = obj.settings
    try:
        created = ensure_topics(s.kafka, timeout_s=wait)
    except KafkaUnavailable as err:
        fail(str(err), code=1)
    say(f"kafka: {len(created)} topics created" + (f" ({', '.join(created)})" if created else ", all existed"))
    client = make_client(s.elasticsearch)
    deadline = time.monotonic() + wait
    while True:
        try:
            result = ensure_indices(client, s.elasticsearch)
            break
        except (TransportError, ConnectionError) as err:
            if time.monotonic() >= deadline:
                fail(f"elasticsearch: not reachable at {s.elasticsearch.url} after {wait:.0f} s: {err}", code=1)
            time.sleep(3)
    say(f"elasticsearch: templates v{result.layout.version} applied, lifecycle "
         + ("by ILM" if result.ilm else "by the sink (no ILM on this cluster)"))
    if with_kibana or (with_kibana is None and s.kibana.url):
        if not s.kibana.url:
            fail("kibana.url is not set")
        try:
            body = import_objects(s.kibana, objects_for(s))
        except KibanaError as err:
            fail(str(err), code=1)
        say(f"kibana: {body.get('successCount', 0)} saved objects imported")
