"""Model loading, training and evaluation (the enrichment behind the pipeline's agents)."""

from pathlib import Path

from stimmung.models.base import Annotations, Annotator, Enricher, MentionText


def custom_heads_dir(m) -> Path:
    """Where `stimmung models train-labels` saves heads and the enricher looks for them."""
    return Path(m.custom_heads_dir) if m.custom_heads_dir else Path.home() / ".local" / "share" / "stimmung" / "heads"


def builtin_annotator(m, sentiment: bool, topics: bool, heads: bool | None = None, shared_pass: bool = False):
    """The offline e5 annotator as ``models`` settings (``ModelSettings``) configure it."""
    from stimmung.models.annotators import E5Annotator

    return E5Annotator(sentiment_file=m.sentiment_file, taxonomy_file=m.taxonomy_file, batch_size=m.batch_size,
                       threads=m.threads or None, quantization=m.quantization, sentiment=sentiment, topics=topics,
                       heads=m.heads if heads is None else heads, custom_heads_dir=custom_heads_dir(m),
                       long_tokens=m.long_tokens, shared_pass=shared_pass)


def default_enricher(settings=None) -> Enricher:
    """The chain the settings ask for: language, then sentiment and topics (one encoder pass)."""
    from stimmung.config import ModelSettings
    from stimmung.models.language import LanguageAnnotator

    m = settings.models if settings is not None else ModelSettings()
    chain: list = [LanguageAnnotator()]
    builtin_sentiment = m.sentiment == "builtin"
    if builtin_sentiment or m.topics or m.heads:
        chain.append(builtin_annotator(m, sentiment=builtin_sentiment, topics=m.topics))
    if m.sentiment not in ("builtin", "off"):
        from stimmung.models.annotators import HFSentimentAnnotator

        chain.append(HFSentimentAnnotator(m.sentiment, batch_size=m.batch_size))
    return Enricher(chain)


__all__ = ["Annotations", "Annotator", "Enricher", "MentionText", "builtin_annotator", "custom_heads_dir",
           "default_enricher"]
