"""Source connectors: fetch mentions and publish them as RawMention to Kafka.

Each connector is one folder (``client.py`` speaks the source, ``source.py`` maps to
``RawMention`` and answers ``ping()``, ``settings.py`` declares its settings section) registered
by name in ``registry.CONNECTORS``. ``runner.py`` publishes any source
(batches, dead letters, checkpoints); ``fileimport/job.py`` runs one file import end to end.
"""
