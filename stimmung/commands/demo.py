"""`stimmung demo`: the local stack plus the bundled sample -> enriched, searchable mentions."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from stimmung.commands.common import Context, say


@click.command("demo")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Import this file instead of the bundled sample.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait for indexing.")
@click.option("--keep-stack/--stop-stack", default=True, show_default=True,
              help="Leave Kafka and Elasticsearch running afterwards so you can search.")
@click.option("--inbox/--no-inbox", "start_inbox", default=True, show_default=True,
              help="Start the case inbox on the sample's cases in the background (with --keep-stack).")
@click.pass_obj
def demo(obj: Context, path: Path | None, timeout: float, keep_stack: bool, start_inbox: bool) -> None:
    """The main job on the embedded default: local stack + sample -> enriched, searchable mentions,
    routed into case queues, and the case inbox running on them (address and demo login printed).

    What the demo establishes (key file, brands, case routes, inbox account) is written to the
    default settings file, ~/.config/stimmung/config.yaml, which later commands read without flags."""
    from stimmung.demo import run_demo

    sys.exit(run_demo(obj.settings, path, timeout, keep_stack, config_file=obj.config, say=say,
                      start_inbox=start_inbox))
