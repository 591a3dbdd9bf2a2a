"""Source connectors: fetch mentions and publish them as RawMention to Kafka.

Each connector is one folder (``client.py`` speaks the source, ``source.py`` maps to
``RawMention``) registered in ``REGISTRY`` by name.
"""
