"""Model loading, training and evaluation (the enrichment behind the pipeline's agents)."""

from stimmung.models.base import Annotations, Annotator, Enricher, MentionText


def default_enricher() -> Enricher:
    """The offline default chain. Sentiment and topics join here once their models exist."""
    from stimmung.models.language import LanguageAnnotator

    return Enricher([LanguageAnnotator()])


__all__ = ["Annotations", "Annotator", "Enricher", "MentionText", "default_enricher"]
