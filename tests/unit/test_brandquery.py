"""The brand query language: parsing, errors with positions, matching (examples + properties)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stimmung.brandquery import (
    And,
    BrandQueryError,
    Field,
    Near,
    Not,
    Or,
    Target,
    Term,
    normalize,
    parse,
    render,
    tokenize,
)

# ---- examples operators write (German and English) ----------------------------------------------

CASES = [
    # query, text, language, url, author, expected
    ('Nordbahn AND (Verspätung* OR "Zug fällt aus")', "Die Nordbahn hat schon wieder Verspätungen", "de", None, None, True),
    ('Nordbahn AND (Verspätung* OR "Zug fällt aus")', "NORDBAHN: der zug FALLT aus!!", "de", None, None, True),
    ('Nordbahn AND (Verspätung* OR "Zug fällt aus")', "Nordbahn: Zug fällt heute nicht aus", "de", None, None, False),
    ('Nordbahn NOT Gewinnspiel', "Nordbahn Gewinnspiel: jetzt teilnehmen", "de", None, None, False),
    ('Nordbahn NOT Gewinnspiel', "Nordbahn ist pünktlich", "de", None, None, True),
    ('"Nordbahn" NEAR/3 (refund OR erstatt*)', "I want a refund from nordbahn now", "en", None, None, True),
    ('"Nordbahn" NEAR/3 (refund OR erstatt*)', "Nordbahn: Erstattung beantragt", "de", None, None, True),
    ('"Nordbahn" NEAR/3 (refund OR erstatt*)', "Nordbahn is late and I am tired, give me a refund", "en", None, None, False),
    ("Café Müller", "cafe MULLER opens", None, None, None, True),
    ("Straße", "STRASSE gesperrt", None, None, None, True),
    ("🚆 nordbahn", "Nordbahn 🚆🚆 again", None, None, None, True),
    ("👍 nordbahn", "Nordbahn 👍🏽", None, None, None, True),  # skin tone ignored
    ("nordbahn lang:de", "Nordbahn late", "en", None, None, False),
    ("nordbahn site:reddit.com", "nordbahn", None, "https://old.reddit.com/r/x/1", None, True),
    ("nordbahn site:reddit.com", "nordbahn", None, "https://notreddit.com/x", None, False),
    ("nordbahn author:@Nordbahn_Hilfe", "nordbahn", None, None, "nordbahn_hilfe", True),
    ("deliver*", "Delivered late", "en", None, None, True),
    ("deliver*", "undelivered", "en", None, None, False),  # trailing wildcard only
    ("o2.de", "Mein Vertrag bei O2.de", "de", None, None, True),  # punctuation splits like a phrase
    ("ORANGE OR orange", "orange juice", None, None, None, True),  # upper-case words that start like operators
    ("Kaufhafen", "Kaufhafen's app keeps crashing", "en", None, None, True),  # possessive
    ("Kaufhafen", "Kaufhafen’s app keeps crashing", "en", None, None, True),
    ("Nordbahn", "Die Verspätungen der Nordbahns nerven", "de", None, None, True),  # genitive
    ("Nordbahn -Gewinnspiel", "Nordbahn Gewinnspiel: jetzt teilnehmen", "de", None, None, False),  # X/Brandwatch minus
    ("Nordbahn -Gewinnspiel", "Nordbahn ist pünktlich", "de", None, None, True),
    ('Nordbahn "sentiment:negative"', "nordbahn sentiment: negative", None, None, None, True),  # quoted: just text
]


@pytest.mark.parametrize("query, text, language, url, author, expected", CASES)
def test_examples(query, text, language, url, author, expected):
    assert parse(query).matches(Target.of(text, language, url, author)) is expected


@pytest.mark.parametrize("query, message, position", [
    ("", "empty", 0),
    ("Nordbahn AND", "ends too early", 12),
    ("(Nordbahn OR DB", "ends too early", 15),
    ("Nordbahn)", "unexpected ')'", 8),
    ('"Zug fällt aus', "unclosed quote", 0),
    ("Verspä*tung", "may only end a word", 0),
    ("Nordbahn AND v*", "at least 2 characters", 13),
    ("NOT Gewinnspiel", "besides NOT", 0),
    ("Nordbahn OR NOT Gewinnspiel", "besides NOT", 0),
    ("OR Nordbahn", "unexpected 'OR'", 0),
    ("a NEAR/2 lang:de", "NEAR/n joins", 2),
    ("a NEAR/99 b", "at most 50", 2),
    ("Nordbahn lang:deutsch", "language code", 14),
    ("Nordbahn site:intranet", "domain", 14),
    ('Nordbahn ""', "empty phrase", 9),
    ("Nordbahn NEAR Erstattung", "NEAR needs a distance", 9),
    ("Nordbahn NEAR/x Erstattung", "NEAR needs a distance", 9),
    ("Nordbahn sentiment:negative", "unknown field sentiment:", 9),
    ("platform:reddit Nordbahn", "unknown field platform:", 0),
    ("Nordbahn - Gewinnspiel", "to exclude something write NOT", 9),
    ("-Gewinnspiel", "besides NOT", 0),
])
def test_errors_say_what_and_where(query, message, position):
    with pytest.raises(BrandQueryError) as info:
        parse(query)
    assert message in info.value.message
    assert info.value.position == position
    assert "^" in str(info.value)


def test_operators_bind_not_then_near_then_and_then_or():
    tree = parse("a b OR c NOT d").tree
    assert tree == Or((And((Term(("a",)), Term(("b",)))), And((Term(("c",)), Not(Term(("d",)))))))


def test_compiles_to_elasticsearch_on_the_accent_insensitive_field():
    es = parse('Nordbahn (Verspätung* OR "Zug fällt aus") NOT lang:fr author:x').to_elasticsearch(
        pseudonyms_for=lambda handle: [f"psn_{handle}"])
    assert es == {"bool": {
        "must": [{"bool": {"should": [{"match_phrase": {"text.folded": "nordbahn"}},  # and its genitive/possessive
                                      {"match_phrase": {"text.folded": "nordbahns"}},
                                      {"match_phrase": {"text.folded": "nordbahn's"}}], "minimum_should_match": 1}},
                 {"bool": {"should": [{"prefix": {"text.folded": {"value": "verspatung"}}},
                                      {"match_phrase": {"text.folded": "zug fallt aus"}}], "minimum_should_match": 1}},
                 {"terms": {"author.pseudonym": ["psn_x"]}}],
        "must_not": [{"term": {"language": "fr"}}]}}
    with pytest.raises(ValueError, match="pseudonymisation key"):
        parse("author:x nordbahn").to_elasticsearch()


# ---- properties -----------------------------------------------------------------------------------

WORDS = st.sampled_from(["nordbahn", "zug", "verspätung", "lieferung", "refund", "delay", "café", "straße",
                         "müller", "o2", "🚆", "👍", "ärger", "service", "x1"])
terms = st.builds(lambda ws, p: Term(tuple(tokenize(" ".join(ws))), p and len(tokenize(ws[-1])[-1]) >= 2),
                  st.lists(WORDS, min_size=1, max_size=3), st.booleans())
fields = st.one_of(st.builds(Field, st.just("lang"), st.sampled_from(["de", "en"])),
                   st.builds(Field, st.just("site"), st.sampled_from(["reddit.com", "example.org"])))
leaves = st.one_of(terms, terms, fields,
                   st.builds(lambda a, b, n: Near((a,), (b,), n), terms, terms, st.integers(0, 5)))


def _trees(children):
    return st.one_of(
        st.builds(lambda cs: And(tuple(cs)), st.lists(children, min_size=2, max_size=3)),
        st.builds(lambda cs: Or(tuple(cs)), st.lists(children, min_size=2, max_size=3)),
        st.builds(lambda pos, neg: And((pos, Not(neg))), children, children),
    )


trees = st.recursive(leaves, _trees, max_leaves=8)


def _canonical(node):
    """Flatten nested And/Or the way the parser does."""
    if isinstance(node, (And, Or)):
        out = []
        for c in node.children:
            c = _canonical(c)
            out.extend(c.children if type(c) is type(node) else [c])
        return type(node)(tuple(out))
    if isinstance(node, Not):
        return Not(_canonical(node.child))
    return node


def _valid(node) -> bool:
    from stimmung.brandquery import _positive
    return _positive(node)


@given(trees)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_render_then_parse_gives_the_same_tree(tree):
    assume(_valid(tree))
    assert parse(render(tree)).tree == _canonical(tree)


@given(st.text(max_size=60))
@settings(max_examples=500)
def test_any_input_parses_or_fails_with_a_position_inside_the_query(text):
    try:
        query = parse(text)
    except BrandQueryError as err:
        assert 0 <= err.position <= len(text)
    else:
        query.matches_text(text)  # a parsed query can always be evaluated


@given(st.lists(WORDS, min_size=1, max_size=12), st.data())
def test_a_word_from_the_text_matches_in_any_case_and_without_accents(words, data):
    text = " ".join(words)
    word = data.draw(st.sampled_from(words))
    stripped = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    for variant in (word, word.upper(), stripped, stripped.title()):
        assert parse(variant).matches_text(text)
        assert parse(f'"{variant}"').matches_text(text)


@given(st.lists(WORDS, min_size=2, max_size=12), st.data())
def test_near_matches_exactly_when_two_words_are_at_most_n_apart(words, data):
    i = data.draw(st.integers(0, len(words) - 1))
    j = data.draw(st.integers(0, len(words) - 1))
    assume(i != j and tokenize(words[i]) and tokenize(words[j]))
    a, b = tokenize(words[i])[0], tokenize(words[j])[0]
    tokens = tokenize(" ".join(words))
    pa = [k for k, t in enumerate(tokens) if t == a]
    pb = [k for k, t in enumerate(tokens) if t == b]
    n = data.draw(st.integers(0, 6))
    expected = any(0 <= abs(x - y) - 1 <= n for x in pa for y in pb)
    assert parse(f"{a} NEAR/{n} {b}").matches_text(" ".join(words)) is expected


@given(trees, st.lists(WORDS, max_size=10), st.sampled_from(["de", "en", None]))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_boolean_operators_obey_boolean_logic(tree, words, language):
    assume(_valid(tree))
    target = Target.of(" ".join(words), language, "https://www.reddit.com/r/x")

    def truth(node):
        if isinstance(node, And):
            return all(truth(c) for c in node.children)
        if isinstance(node, Or):
            return any(truth(c) for c in node.children)
        if isinstance(node, Not):
            return not truth(node.child)
        return parse(render(node)).matches(target)  # leaves on their own

    assert parse(render(tree)).matches(target) is truth(tree)


def test_normalize_folds_case_accents_and_emoji_modifiers():
    assert normalize("Müller STRASSE Straße 👍🏽\ufe0f") == "muller strasse strasse 👍"
    assert tokenize("Hallo, @Nordbahn! #Verspätung 🚆...") == ["hallo", "nordbahn", "verspatung", "🚆"]
