"""`stimmung lag`: how far each role's consumer group trails its topic, from Kafka's committed
offsets (the same figure as the roles' `stimmung_consumer_lag_messages` gauge and KEDA's Kafka
scaler), read from outside the roles: a script can wait for "caught up" (`--max-lag 0`)."""

from __future__ import annotations

import json
from typing import Any

import click

from stimmung.commands.common import Context, fail


@click.command("lag")
@click.argument("roles", nargs=-1)
@click.option("--group", "groups", multiple=True, metavar="GROUP:TOPIC",
              help="Also (or only) this consumer group on this topic, e.g. my-app-sink:stimmung.enriched.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: per group its topic, lag and partitions.")
@click.option("--max-lag", type=click.IntRange(min=0), default=None,
              help="Exit 1 when any listed group trails by more than this many messages.")
@click.pass_obj
def lag(obj: Context, roles: tuple[str, ...], groups: tuple[str, ...], as_json: bool, max_lag: int | None) -> None:
    """Consumer lag per role (worker, sink, alerting, cases, privacy-worker; default: all)."""
    from stimmung.lag import measure_partition_lag, role_groups

    settings = obj.settings
    known = role_groups(settings)
    unknown = [r for r in roles if r not in known]
    if unknown:
        fail(f"unknown role(s) {unknown}; choose from {sorted(known)} or use --group GROUP:TOPIC")
    wanted = {r: known[r] for r in (roles or ([] if groups else known))}
    for spec in groups:
        group, _, topic = spec.partition(":")
        if not group or not topic:
            fail(f"--group {spec!r}: use GROUP:TOPIC")
        wanted[group] = (group, topic)
    result: dict[str, dict[str, Any]] = {}
    for name, (group, topic) in wanted.items():
        partitions = measure_partition_lag(settings.kafka, group, topic)
        result[name] = {"group": group, "topic": topic, "lag": sum(p["lag"] for p in partitions),
                        "partitions": partitions}
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"{'role/group':<16} {'consumer group':<28} {'topic':<22} {'lag':>9}  partitions (lag)")
        for name, r in result.items():
            parts = " ".join(f"{p['partition']}:{p['lag']}" for p in r["partitions"]) or "topic missing"
            click.echo(f"{name:<16} {r['group']:<28} {r['topic']:<22} {r['lag']:>9,}  {parts}")
    if max_lag is not None:
        behind = {n: r["lag"] for n, r in result.items() if r["lag"] > max_lag}
        if behind:
            click.echo(f"behind by more than {max_lag}: " + ", ".join(f"{n} {v:,}" for n, v in behind.items()), err=True)
            raise SystemExit(1)
