"""What stands behind a window's count: distinct authors, distinct texts, top terms.

A retweet storm (one text, many accounts) or one account posting fifty times is a count, not a
complaint wave; the spike detector tests the smallest of count, distinct authors and distinct
texts. Windows keep only short hashes: of the author's pseudonym (the enricher's keyed HMAC, never
a handle) and of the normalised text (case, links, @handles, "RT" and spacing removed, so copies
of one post are one text). Terms are counted for the alert's "top terms" and capped per window,
so a window's state stays small.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

TERMS_PER_WINDOW = 30
_URL = re.compile(r"https?://\S+|www\.\S+")
_HANDLE = re.compile(r"@\w+")
_WORD = re.compile(r"#?[^\W\d_][\w'’-]{2,}", re.UNICODE)
# Function words of the languages the pipeline sees most (en, de, fr, es): never a "top term".
_STOP = frozenset("""
the and for that this with you your are was were have has had not but all can our out its it's
just get got from they them what when will would there their about been into than then also very
really more some any who how why one did does don't can't i'm i've via amp
der die das und ist ich nicht mit sie auf für ein eine einen dem den des von zu zum zur bei aus
auch noch nur wie was wir ihr sich schon mal doch aber oder wenn dass hat haben sind war bin
wieder kein keine keinen immer sehr heute
les des une est pas pour que qui dans sur avec mais vous nous
los las una por que con para del como pero muy
""".split())


def short_hash(value: str) -> str:
    return hashlib.blake2b(value.encode("utf-8"), digest_size=6).hexdigest()


def text_key(text: str) -> str:
    """Hash of the text as a copy would have it: one retweeted or pasted post is one text."""
    cleaned = _HANDLE.sub("", _URL.sub("", text.lower()))
    cleaned = re.sub(r"^\s*rt\b[:\s]*", "", cleaned)
    return short_hash(" ".join(cleaned.split()))


def author_key(pseudonym: str | None, mention_id: str) -> str:
    """Hash of the author's pseudonym; a mention without author counts as its own author."""
    return short_hash(pseudonym or f"mention:{mention_id}")


def terms(text: str) -> list[str]:
    words = _WORD.findall(_HANDLE.sub("", _URL.sub("", text.lower())))
    return sorted({w.strip("'’-") for w in words if w.strip("'’-") not in _STOP})


def merge_terms(counts: dict[str, int], new: list[str], keep: int = TERMS_PER_WINDOW) -> dict[str, int]:
    merged = Counter(counts)
    merged.update(new)
    return dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))[:keep])


def top_terms(windows: list[dict[str, int]], n: int = 5) -> list[str]:
    total: Counter[str] = Counter()
    for w in windows:
        total.update(w)
    return [t for t, c in sorted(total.items(), key=lambda kv: (-kv[1], kv[0])) if c > 1][:n]
