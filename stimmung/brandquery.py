"""The brand query language: what operators of listening tools write to say "this is about us".

    DB AND (Verspätung* OR "Zug fällt aus") NOT lang:fr
    "Nordbahn" NEAR/3 (refund OR erstatt*)  site:reddit.com  author:@nordbahn_hilfe

- ``AND``, ``OR``, ``NOT`` (upper case; a lower-case "and" is a word), parentheses; two terms side
  by side mean AND. ``NOT`` binds tightest, then ``NEAR/n``, then AND, then OR.
- ``"exact phrases"``; ``word*`` matches words starting with ``word`` (trailing only, 2+ letters).
- ``a NEAR/n b``: a and b at most n words apart, in either order (a and b: words, phrases, or
  OR-groups of them such as ``(refund OR erstatt*)``).
- ``author:handle`` (any spelling schemas/identity.py understands: ``@user@host``, a profile URL;
  it matches the author's canonical key on the mention's platform, or their display handle),
  ``site:example.com`` (subdomains too), ``lang:de``; other ``name:`` prefixes
  are errors (quote them to search the text). ``-word`` excludes like ``NOT word``.
- A word also finds its possessive/genitive: ``Nordbahn`` finds "Nordbahns" and "Nordbahn's".
- Case- and accent-insensitive ("Müller" = "muller", "STRASSE" = "Straße"); emoji are terms of
  their own (skin tones and variation selectors ignored).

``parse()`` reports mistakes with their position; ``Query.matches()`` is the compiled matcher for
mentions in the stream; ``to_elasticsearch()`` gives the same query for the index.

One module on purpose (about 510 lines): the grammar, the tree, the stream matcher and the
Elasticsearch compiler are kept side by side so the two evaluations of one tree cannot drift.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable, NoReturn, Union
from urllib.parse import urlsplit

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from stimmung.schemas.identity import author_key, legacy_key

_WORD_END = r"(?![^\s()\"])"
GRAMMAR = rf"""
start: expr
?expr: or_
?or_: and_ (_OR and_)*
?and_: not_ (_AND? not_)*
?not_: NOT not_       -> negation
     | near
?near: atom (NEAR atom)*
?atom: "(" expr ")"
     | FIELD (WORD | PHRASE) -> field
     | PHRASE              -> phrase
     | WORD                -> word

_OR.3: /OR{_WORD_END}/
_AND.3: /AND{_WORD_END}/
NOT.3: /NOT{_WORD_END}/
NEAR.3: /NEAR\/\d+{_WORD_END}/
FIELD.3: /(author|site|lang):/i
PHRASE.2: /"[^"]*"/
WORD.1: /[^\s()"]+/
%ignore /\s+/
"""

FIELDS = ("author", "site", "lang")
MAX_NEAR = 50


class BrandQueryError(ValueError):
    """A query that cannot be parsed: ``position`` is the 0-based character offset."""

    def __init__(self, message: str, query: str, position: int):
        self.message, self.query, self.position = message, query, position
        super().__init__(f"{message} (at character {position + 1})\n  {query}\n  {' ' * position}^")


# ---- normalisation and tokenisation (shared by queries and mention texts) -----------------------

_SKIN_TONES = set(range(0x1F3FB, 0x1F400))
_TOKEN = re.compile(r"\w+|[^\w\s]")


def normalize(text: str) -> str:
    """Case- and accent-insensitive form: casefold, decompose, drop combining marks and emoji
    modifiers (variation selectors, zero-width joiners, skin tones)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed
                   if unicodedata.category(c) not in ("Mn", "Me", "Cf") and ord(c) not in _SKIN_TONES)


def tokenize(text: str) -> list[str]:
    """Words (letters/digits of any script) and symbols such as emoji; punctuation is dropped."""
    return [t for t in _TOKEN.findall(normalize(text))
            if t[0].isalnum() or t[0] == "_" or unicodedata.category(t[0]).startswith("S")]


# ---- the syntax tree ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Term:
    """A word (one token) or phrase (several); ``prefix``: the last token is a trailing wildcard."""
    tokens: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True)
class Field:
    name: str   # author | site | lang
    value: str  # normalised


@dataclass(frozen=True)
class Not:
    child: "Node"


@dataclass(frozen=True)
class And:
    children: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    children: tuple["Node", ...]


@dataclass(frozen=True)
class Near:
    """Any of ``left`` within ``distance`` words of any of ``right``."""
    left: tuple[Term, ...]
    right: tuple[Term, ...]
    distance: int


Node = Union[Term, Field, Not, And, Or, Near]


class _Build(Transformer):
    def __init__(self, query: str):
        super().__init__()
        self.query = query

    def _fail(self, message: str, token: Token | None) -> NoReturn:
        raise BrandQueryError(message, self.query, (token.start_pos or 0) if token is not None else 0)

    def _term(self, token: Token, text: str, phrase: bool) -> Term:
        prefix = text.endswith("*")
        if "*" in text.rstrip("*") or text.endswith("**"):
            self._fail("a wildcard * may only end a word (e.g. liefer*)", token)
        if phrase and prefix and text.endswith(" *"):
            self._fail("a wildcard * must be attached to a word", token)
        tokens = tuple(tokenize(text.rstrip("*")))
        if not tokens:
            self._fail("empty phrase" if phrase else f"{text!r} has no letters, digits or emoji to search for", token)
        if prefix and len(tokens[-1]) < 2:
            self._fail("a wildcard needs at least 2 characters before the *", token)
        return Term(tokens, prefix)

    @v_args(inline=True)
    def word(self, token: Token) -> Node:
        text = str(token)
        if text == "NEAR" or text.startswith("NEAR/"):
            self._fail("NEAR needs a distance in words, e.g. NEAR/3", token)
        field = re.fullmatch(r"([^\W\d_]{2,}):(.*)", text)
        if field and not text.startswith(("http:", "https:")):
            # e.g. sentiment:negative from other tools' syntax: silently searching for the two
            # words would find nothing, so say which fields exist (facets are search options).
            self._fail(f"unknown field {field.group(1)}: (fields: author:, site:, lang:; sentiment, platform "
                       f"and topic are search options such as --sentiment; to search the text, quote it: "
                       f"\"{text}\")", token)
        if text.startswith("-"):
            # Brandwatch/X users exclude with a minus: -gewinnspiel means NOT gewinnspiel.
            if len(text) == 1 or not (text[1].isalnum() or text[1] == "#"):
                self._fail("to exclude something write NOT term (or -term directly before a word)", token)
            return Not(self._term(token, text[1:], phrase=False))
        return self._term(token, text, phrase=False)

    @v_args(inline=True)
    def phrase(self, token: Token) -> Term:
        return self._term(token, str(token)[1:-1], phrase=True)

    @v_args(inline=True)
    def field(self, name: Token, value: Token) -> Field:
        key = str(name)[:-1].lower()
        raw = str(value)[1:-1] if value.type == "PHRASE" else str(value)
        if "*" in raw:
            self._fail(f"{key}: takes an exact value, no wildcard", value)
        if key == "lang":
            code = raw.strip().lower()
            if not re.fullmatch(r"[a-z]{2,3}", code):
                self._fail("lang: takes a language code such as de or en", value)
            return Field(key, code)
        if key == "site":
            host = ((urlsplit(raw).hostname or "") if "//" in raw else raw.split("/")[0]).lower().removeprefix("www.")
            if not re.fullmatch(r"[\w-]+(\.[\w-]+)+", host or ""):
                self._fail("site: takes a domain such as reddit.com", value)
            return Field(key, host)
        # Only folded here: the platform-specific key is made per mention (author_key), since a
        # query does not know which platform the author is on.
        handle = legacy_key(raw)
        if not handle:
            self._fail("author: takes a handle", value)
        return Field(key, handle)

    @v_args(inline=True)
    def negation(self, _not: Token, child: Node) -> Not:
        return Not(child)

    def near(self, items: list[Any]) -> Node:
        if len(items) > 3:
            self._fail("chain NEAR/n with parentheses and AND instead (a NEAR/2 b AND b NEAR/2 c)", items[3])
        left, op, right = items
        distance = int(str(op).split("/")[1])
        first, second = _near_operand(left), _near_operand(right)
        if first is None or second is None:
            self._fail("NEAR/n joins words, phrases or OR-groups of them (not fields, NOT or AND)", op)
        if distance > MAX_NEAR:
            self._fail(f"NEAR/n allows at most {MAX_NEAR} words", op)
        return Near(first, second, distance)

    def and_(self, items: list[Node]) -> And:
        return And(tuple(_flatten(items, And)))

    def or_(self, items: list[Node]) -> Or:
        return Or(tuple(_flatten(items, Or)))

    @v_args(inline=True)
    def start(self, node: Node) -> Node:
        return node


def _near_operand(node: Node) -> tuple[Term, ...] | None:
    if isinstance(node, Term):
        return (node,)
    if isinstance(node, Or) and all(isinstance(c, Term) for c in node.children):
        return tuple(node.children)  # type: ignore[arg-type]
    return None


def _flatten(items: Iterable[Node], kind: type) -> Iterable[Node]:
    for item in items:
        if isinstance(item, kind):
            yield from item.children  # type: ignore[union-attr]
        else:
            yield item


@lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="basic", propagate_positions=False)


_EXPECTED = {"WORD": "a word", "PHRASE": "a phrase", "FIELD": "a field", "LPAR": "(", "RPAR": ")",
             "NOT": "NOT", "_OR": "OR", "_AND": "AND", "NEAR": "NEAR/n", "$END": "the end"}


def _positive(node: Node) -> bool:
    """Whether a node can match by itself (a pure NOT cannot: it would match almost everything)."""
    if isinstance(node, Not):
        return False
    if isinstance(node, And):
        return any(_positive(c) for c in node.children)
    if isinstance(node, Or):
        return all(_positive(c) for c in node.children)
    return True


def parse_tree(query: str) -> Node:
    if not query or not query.strip():
        raise BrandQueryError("the query is empty", query or "", 0)
    try:
        tree = _parser().parse(query)
        node = _Build(query).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, BrandQueryError):
            raise err.orig_exc from None
        raise
    except UnexpectedCharacters as err:
        position = err.pos_in_stream or 0
        char = query[position]
        message = "unclosed quote" if char == '"' else f"unexpected {char!r}"
        raise BrandQueryError(message, query, position) from None
    except UnexpectedEOF:
        raise BrandQueryError("the query ends too early", query, len(query)) from None
    except UnexpectedToken as err:
        token = err.token
        if token.type == "$END":
            what = "the query ends too early"
            position = len(query.rstrip())
        else:
            what = f"unexpected {str(token)!r}"
            position = token.start_pos
        expected = sorted(_EXPECTED.get(e, e) for e in err.expected if not e.startswith("__"))
        if expected:
            what += f" (expected {', '.join(expected)})"
        raise BrandQueryError(what, query, position) from None
    except UnexpectedInput as err:  # pragma: no cover - the cases above are exhaustive for LALR
        raise BrandQueryError("cannot parse the query", query, getattr(err, "pos_in_stream", 0) or 0) from None
    if not _positive(node):
        raise BrandQueryError("the query needs something to look for besides NOT "
                              "(e.g. brand NOT spam, not NOT spam alone)", query, 0)
    return node


# ---- matching mentions -----------------------------------------------------------------------------

@dataclass
class Target:
    """What a query looks at in one mention, prepared once."""
    positions: dict[str, list[int]]
    tokens: list[str]
    language: str | None = None
    site: str | None = None
    author: str | None = None
    platform: str = ""
    author_display: str | None = None

    @classmethod
    def of(cls, text: str, language: str | None = None, url: str | None = None, author: str | None = None,
           platform: str = "", author_display: str | None = None) -> "Target":
        tokens = tokenize(text)
        positions: dict[str, list[int]] = {}
        for i, tok in enumerate(tokens):
            positions.setdefault(tok, []).append(i)
        host = urlsplit(url).hostname if url else None
        return cls(positions, tokens, (language or "").lower() or None,
                   host.lower().removeprefix("www.") if host else None,
                   author_key(platform, author) if author else None, platform,
                   legacy_key(author_display) if author_display else None)


Matcher = Callable[[Target], bool]


def _spans(term: Term, t: Target) -> list[tuple[int, int]]:
    """(first, last) token positions of every occurrence of a term."""
    first, *rest = term.tokens
    if not rest:
        if term.prefix:
            return [(i, i) for tok, pos in t.positions.items() if tok.startswith(first) for i in pos]
        return [(i, i) for i in t.positions.get(first, ())]
    out = []
    n = len(term.tokens)
    for i in (t.positions.get(first, ()) if not (term.prefix and n == 1) else ()):
        window = t.tokens[i:i + n]
        if len(window) == n and window[:-1] == list(term.tokens[:-1]) and (
                window[-1] == term.tokens[-1] or (term.prefix and window[-1].startswith(term.tokens[-1]))):
            out.append((i, i + n - 1))
    return out


def _word_forms(token: str) -> tuple[str, ...]:
    """A word and its possessive/genitive: "Nordbahns" and "Kaufhafen's" are about the brand too.
    (The stream tokenizer splits "kaufhafen's" at the apostrophe; the index keeps it whole.)"""
    return (token, token + "s") if len(token) >= 3 and token[-1].isalpha() else (token,)


@lru_cache(maxsize=4096)
def _author_key(platform: str, value: str) -> str:
    return author_key(platform, value)


def _compile(node: Node) -> Matcher:
    if isinstance(node, Term):
        if len(node.tokens) == 1 and not node.prefix:
            forms = _word_forms(node.tokens[0])
            return lambda t: any(form in t.positions for form in forms)
        return lambda t: bool(_spans(node, t))
    if isinstance(node, Field):
        value = node.value
        if node.name == "lang":
            return lambda t: t.language == value
        if node.name == "site":
            return lambda t: t.site is not None and (t.site == value or t.site.endswith("." + value))
        return lambda t: t.author is not None and (_author_key(t.platform, value) == t.author or value == t.author_display)
    if isinstance(node, Not):
        inner = _compile(node.child)
        return lambda t: not inner(t)
    if isinstance(node, And):
        parts = [_compile(c) for c in node.children]
        return lambda t: all(p(t) for p in parts)
    if isinstance(node, Or):
        parts = [_compile(c) for c in node.children]
        return lambda t: any(p(t) for p in parts)
    if isinstance(node, Near):
        left, right, n = node.left, node.right, node.distance

        def near(t: Target) -> bool:
            a = [s for term in left for s in _spans(term, t)]
            b = [s for term in right for s in _spans(term, t)]
            for s1, e1 in a:
                for s2, e2 in b:
                    gap = s2 - e1 - 1 if s2 > e1 else s1 - e2 - 1
                    if 0 <= gap <= n:
                        return True
            return False
        return near
    raise TypeError(node)


# ---- Elasticsearch ---------------------------------------------------------------------------------

TEXT_FIELD = "text.folded"


def _span(term: Term) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []
    for i, tok in enumerate(term.tokens):
        if term.prefix and i == len(term.tokens) - 1:
            clauses.append({"span_multi": {"match": {"prefix": {TEXT_FIELD: {"value": tok}}}}})
        else:
            clauses.append({"span_term": {TEXT_FIELD: tok}})
    if len(clauses) == 1:
        return clauses[0]
    return {"span_near": {"clauses": clauses, "slop": 0, "in_order": True}}


def _es(node: Node, pseudonyms_for: Callable[[str], list[str]] | None) -> dict[str, Any]:
    if isinstance(node, Term):
        text = " ".join(node.tokens)
        if not node.prefix and len(node.tokens) == 1 and len(forms := _word_forms(text)) > 1:
            variants = [*forms, text + "'s"]  # the index keeps "kaufhafen's" (and ’s, folded) as one token
            return {"bool": {"should": [{"match_phrase": {TEXT_FIELD: v}} for v in variants], "minimum_should_match": 1}}
        if not node.prefix:
            return {"match_phrase": {TEXT_FIELD: text}}
        if len(node.tokens) == 1:
            return {"prefix": {TEXT_FIELD: {"value": text}}}
        return {"match_phrase_prefix": {TEXT_FIELD: text}}
    if isinstance(node, Field):
        if node.name == "lang":
            return {"term": {"language": node.value}}
        if node.name == "site":
            return {"bool": {"should": [{"term": {"site": node.value}}, {"wildcard": {"site": f"*.{node.value}"}}],
                             "minimum_should_match": 1}}
        if pseudonyms_for is None:
            raise ValueError("author: in a search needs the pseudonymisation key (the index holds pseudonyms only)")
        return {"terms": {"author.pseudonym": pseudonyms_for(node.value)}}
    if isinstance(node, Not):
        return {"bool": {"must_not": [_es(node.child, pseudonyms_for)]}}
    if isinstance(node, And):
        must = [_es(c, pseudonyms_for) for c in node.children if not isinstance(c, Not)]
        must_not = [_es(c.child, pseudonyms_for) for c in node.children if isinstance(c, Not)]
        body: dict[str, Any] = {"must": must}
        if must_not:
            body["must_not"] = must_not
        return {"bool": body}
    if isinstance(node, Or):
        return {"bool": {"should": [_es(c, pseudonyms_for) for c in node.children], "minimum_should_match": 1}}
    if isinstance(node, Near):
        sides = [[_span(t) for t in side] for side in (node.left, node.right)]
        clauses = [s[0] if len(s) == 1 else {"span_or": {"clauses": s}} for s in sides]
        return {"span_near": {"clauses": clauses, "slop": node.distance, "in_order": False}}
    raise TypeError(node)


# ---- the public face ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    text: str
    tree: Node
    _matcher: Matcher

    def matches(self, target: Target) -> bool:
        return self._matcher(target)

    def matches_text(self, text: str, **fields: Any) -> bool:
        return self._matcher(Target.of(text, **fields))

    def to_elasticsearch(self, pseudonyms_for: Callable[[str], list[str]] | None = None) -> dict[str, Any]:
        """The query for the mentions index (``text.folded``, ``language``, ``site``,
        ``author.pseudonym``). ``pseudonyms_for(handle)`` maps an author: handle to pseudonyms."""
        return _es(self.tree, pseudonyms_for)


def parse(query: str) -> Query:
    tree = parse_tree(query)
    return Query(query, tree, _compile(tree))


def render(node: Node) -> str:
    """A query string for a tree (parse(render(t)).tree == t): used by tests and error messages."""
    if isinstance(node, Term):
        body = " ".join(node.tokens) + ("*" if node.prefix else "")
        return body if len(node.tokens) == 1 else f'"{body}"'
    if isinstance(node, Field):
        return f'{node.name}:"{node.value}"'
    if isinstance(node, Not):
        return f"NOT {render(node.child)}" if isinstance(node.child, (Term, Field)) else f"NOT ({render(node.child)})"
    if isinstance(node, Near):
        side = lambda terms: render(terms[0]) if len(terms) == 1 else f"({render(Or(terms))})"  # noqa: E731
        return f"{side(node.left)} NEAR/{node.distance} {side(node.right)}"
    joiner = " AND " if isinstance(node, And) else " OR "
    return joiner.join(render(c) if isinstance(c, (Term, Field, Not, Near)) else f"({render(c)})"
                       for c in node.children)


class BrandTagger:
    """Tags a mention with every configured brand one of whose queries matches it."""

    def __init__(self, brands: Iterable[tuple[str, Iterable[str]]]):
        self.queries = [(name, parse(q)) for name, qs in brands for q in qs]

    @classmethod
    def from_settings(cls, settings: Any) -> "BrandTagger":
        return cls((b.name, b.queries) for b in settings.brands)

    def __bool__(self) -> bool:
        return bool(self.queries)

    def tag(self, target: Target) -> list[tuple[str, str]]:
        """(brand, query text) for each brand that matches, first matching query per brand."""
        found: dict[str, str] = {}
        for name, query in self.queries:
            if name not in found and query.matches(target):
                found[name] = query.text
        return list(found.items())
