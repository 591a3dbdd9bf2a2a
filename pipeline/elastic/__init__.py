"""Elasticsearch: the client and node capabilities (``client``), the mentions indices' mapping,
layout and document shape (``mentions``), the index templates, lifecycle and small indices
(``indices``), template-version migration (``migration``) and the staff search (``search``)."""
