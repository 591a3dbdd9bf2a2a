"""Stimmung: streaming social listening for social CRM.

The ``stimmung`` package holds the shared pieces (settings ``config``, the section base ``sections``
every settings section shares, ``logs``, ``metrics`` and
the probes in ``health``, Kafka helpers ``kafka`` and ``lag``, ``retry``, the brand query
language ``brandquery``, Kibana objects ``kibana``, role start-up ``roles``, ``tables``, the
``demo``) and the CLI (``cli`` with one module per command group in ``commands``). The
top-level folders are linked in as subpackages: ``pipeline``, ``connectors``, ``models``,
``schemas`` and ``localstack`` (deploy/local/).
"""

__version__ = "0.1.0"
