"""The stream pipeline: Faust enrichment agents and the Elasticsearch sink."""
