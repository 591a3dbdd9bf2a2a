"""The stream pipeline, ``stimmung.pipeline``.

Here: the Faust enrichment app and its agent (``app``), the enrichment step (``enrich``),
author pseudonyms (``privacy``), the Elasticsearch sink (``sink``), compacted-topic views read
whole by every worker (``views``), author influence (``influence``), erasure of an author's
mentions (``erasure``) and the worker that turns sources' privacy signals into erasures
(``privacy_signals``), plus fixes to Faust itself (``faust_fixes``).

Subpackages: ``elastic`` (the indices, their mappings and lifecycle, search), ``alerts``
(complaint-spike alerting and delivery channels), ``crm`` (consent, its HTTP API, the case manager).
"""
