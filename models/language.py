"""Language identification with py3langid (its model ships inside the package: works offline)."""

from __future__ import annotations

import re
from importlib.metadata import version as _pkg_version
from typing import Sequence

from py3langid.langid import MODEL_FILE, LanguageIdentifier

from stimmung.models.base import Annotations, MentionText

_HINT_RE = re.compile(r"^([a-zA-Z]{2,3})(?:[-_].*)?$")
# URLs, @handles and #tags say little about a post's language and dominate short posts.
_NOISE_RE = re.compile(r"https?://\S+|[@#][\w.]+", re.UNICODE)


def normalise_hint(hint: str | None) -> str | None:
    """'de-DE' -> 'de'; anything that is not a language tag -> None."""
    if not hint:
        return None
    match = _HINT_RE.match(hint.strip())
    return match.group(1).lower() if match else None


class LanguageAnnotator:
    """Decides each mention's language.

    Policy: the model's answer when it is confident (>= ``confident``) or agrees with the
    source's hint; otherwise the hint when the source gave one (platform hints are user-declared
    and often the UI language, so a confident model wins over them); otherwise the model's answer
    when it reaches ``minimum``; else 'und' (undetermined).
    """

    name = "language"

    def __init__(self, confident: float = 0.9, minimum: float = 0.5):
        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.confident = confident
        self.minimum = minimum
        self.version = f"py3langid-{_pkg_version('py3langid')}"

    def rank(self, text: str) -> list[tuple[str, float]]:
        """Languages with normalised probabilities, most likely first ([] for no usable text)."""
        cleaned = _NOISE_RE.sub(" ", text).strip()
        if not cleaned:
            return []
        return [(lang, float(p)) for lang, p in self._identifier.rank(cleaned)]

    def annotate(self, items: Sequence[MentionText], out: Sequence[Annotations]) -> None:
        for item, ann in zip(items, out, strict=True):
            ranked = self.rank(item.text)
            lang, prob = ranked[0] if ranked else ("und", 0.0)
            hint = normalise_hint(item.language_hint)
            if prob >= self.confident or (hint is not None and lang == hint):
                ann.language, ann.language_confidence, ann.language_source = lang, prob, "model"
            elif hint is not None:
                hint_prob = next((p for code, p in ranked if code == hint), 0.0)
                ann.language, ann.language_confidence, ann.language_source = hint, hint_prob, "hint"
            elif prob >= self.minimum:
                ann.language, ann.language_confidence, ann.language_source = lang, prob, "model"
            else:
                ann.language, ann.language_confidence, ann.language_source = "und", prob, "none"
