import pytest

from stimmung.models import Annotations, MentionText
from stimmung.models.language import LanguageAnnotator, normalise_hint


@pytest.fixture(scope="module")
def annotator():
    return LanguageAnnotator()


def annotate(annotator, *items):
    out = [Annotations() for _ in items]
    annotator.annotate(list(items), out)
    return out


def test_detects_german_and_english(annotator):
    de, en = annotate(annotator,
                      MentionText("Der Zug hat schon wieder vierzig Minuten Verspätung, das ist unglaublich."),
                      MentionText("My parcel never arrived and customer support does not answer my emails."))
    assert (de.language, de.language_source) == ("de", "model") and de.language_confidence > 0.9
    assert (en.language, en.language_source) == ("en", "model") and en.language_confidence > 0.9


def test_hint_decides_when_the_model_is_unsure_but_not_against_a_confident_model(annotator):
    short, wrong_hint = annotate(annotator,
                                 MentionText("ok 👍", language_hint="de-DE"),
                                 MentionText("Die Lieferung kam heute pünktlich und vollständig an, danke!",
                                             language_hint="en"))
    assert (short.language, short.language_source) == ("de", "hint")
    assert (wrong_hint.language, wrong_hint.language_source) == ("de", "model")


def test_no_usable_text_is_undetermined(annotator):
    (result,) = annotate(annotator, MentionText("@someone https://example.com/x #tag"))
    assert (result.language, result.language_source, result.language_confidence) == ("und", "none", 0.0)


@pytest.mark.parametrize("hint,expected", [("de-DE", "de"), ("EN", "en"), ("pt_BR", "pt"), ("", None), ("x", None)])
def test_hint_normalisation(hint, expected):
    assert normalise_hint(hint) == expected
