"""One canonical author key per platform: the single place that decides who is the same author.

The pseudonym is an HMAC of (platform, key) (schemas/pseudonym.py), so two spellings of one
account must give one key, or consent linking, erasure and influence each see part of a person.
``author_key`` takes what a source reported *or* what an operator typed (a handle with or without
``@``, a profile URL) and returns the key:

- ``mastodon``: ``user@host`` — no scheme, no default port (80/443; any other port is kept as
  ``host:port``), host lower case and in its ASCII (IDNA/punycode) form, whichever instance
  reported the account. Accepts ``@user@host``, ``user@https://host``, ``acct:user@host``,
  ``https://host/@user[/123]``, ``https://host/users/user``. A bare ``user`` (no host) stays
  ``user``: nothing says which instance it belongs to.
- ``bluesky``: the DID (``did:plc:…``/``did:web:…``) — handles change, DIDs do not. Accepts
  ``at://did…/…`` and ``https://bsky.app/profile/<did or handle>``. A handle given alone stays the
  handle (lower case): it cannot be resolved to a DID without the network.
- ``x``: the numeric user id (the username can be renamed; it is display only). Accepts
  ``https://x.com/<name>`` and ``@name``; a username given alone stays the username.
- ``reddit``: the username, lower case (Reddit usernames never change and are unique without
  regard to case). Accepts ``u/name``, ``/user/name`` and profile URLs. The ``t2_`` account id is
  not used: listings do not carry it for every item, and nobody asking for erasure knows it.
- ``facebook``/``instagram`` (webhook): the sender's id when the payload has one (connectors).
- every other platform (imports, RSS, Hacker News, …): the handle with Unicode compatibility
  forms folded, surrounding space and a leading ``@`` removed, case folded — exactly the
  normalisation pseudonyms always used, so their pseudonyms did not change.

Pure: no I/O, imports nothing of ours.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

_DEFAULT_PORTS = {None, 80, 443}
_X_HOSTS = {"x.com", "twitter.com", "mobile.twitter.com", "mobile.x.com"}
_REDDIT_USER = re.compile(r"^/?(?:u|user)/([^/]+)")


def legacy_key(handle: str) -> str:
    """The normalisation every pseudonym used before canonical keys (and still the default)."""
    return unicodedata.normalize("NFKC", handle).strip().lstrip("@").casefold()


def _ascii_host(host: str) -> str:
    host = host.strip().rstrip(".").casefold()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:  # not a valid IDN (e.g. a label too long): keep it, folded
        return host


def _host_port(authority: str) -> str | None:
    """``host[:port]`` of a URL or a bare authority, without scheme, default port or path."""
    parts = urlsplit(authority if "//" in authority else "//" + authority)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        return None
    if not host:
        return None
    host = _ascii_host(host)
    return host if port in _DEFAULT_PORTS else f"{host}:{port}"


def _url_path(text: str) -> tuple[str | None, list[str]]:
    parts = urlsplit(text)
    return (parts.hostname or "").casefold() or None, [s for s in parts.path.split("/") if s]


def _mastodon(text: str) -> str | None:
    text = text.removeprefix("acct:")
    if "://" in text and not re.match(r"^@?[^@/:\s]+@", text):  # a profile URL, not user@https://host
        parts = urlsplit(text)
        segments = [s for s in parts.path.split("/") if s]
        if not parts.netloc or not segments:
            return None
        if segments[0].startswith("@"):  # /@user, or /@user@host for a remote account's page
            account = segments[0][1:]
            text = account if "@" in account else f"{account}@{parts.netloc}"
        elif segments[0] == "users" and len(segments) > 1:
            text = f"{segments[1]}@{parts.netloc}"
        else:
            return None
    user, _, domain = text.lstrip("@").partition("@")
    user = user.strip().casefold()
    if not user:
        return None
    if not domain.strip():
        return user
    where = _host_port(domain.strip())
    return f"{user}@{where}" if where else None


def _bluesky(text: str) -> str | None:
    if text.startswith("at://"):
        return text[5:].split("/", 1)[0].casefold() or None
    if "://" in text:
        host, segments = _url_path(text)
        if len(segments) >= 2 and segments[0] == "profile":
            return segments[1].lstrip("@").casefold()
        return None
    return None  # a DID or a handle: the default normalisation


def _x(text: str) -> str | None:
    if "://" in text:
        host, segments = _url_path(text)
        if host and host.removeprefix("www.") in _X_HOSTS and segments:
            return segments[0].lstrip("@").casefold()
        return None
    return None


def _reddit(text: str) -> str | None:
    if "://" in text:
        host, segments = _url_path(text)
        if host and host.endswith("reddit.com") and len(segments) >= 2 and segments[0] in ("u", "user"):
            return segments[1].casefold()
        return None
    match = _REDDIT_USER.match(text)
    return match.group(1).casefold() if match else None


_CANONICAL = {"mastodon": _mastodon, "bluesky": _bluesky, "x": _x, "twitter": _x, "reddit": _reddit}


def author_key(platform: str, handle: str) -> str:
    """The canonical key of an author on ``platform``, from a reported handle or an operator's input."""
    text = unicodedata.normalize("NFKC", handle).strip()
    canonical = _CANONICAL.get(platform.strip().lower())
    key = canonical(text) if canonical and text else None
    return key if key else legacy_key(text)


def key_hint(platform: str, handle: str) -> str | None:
    """A warning when what an operator typed cannot be the key the connectors store (or None)."""
    platform, key = platform.strip().lower(), author_key(platform, handle)
    if platform in ("x", "twitter") and not key.isdigit():
        return ("x authors are keyed by their numeric user id (the username is display only): "
                f"{key!r} finds only data stored under that username (imports, data not yet migrated)")
    if platform == "bluesky" and not key.startswith("did:"):
        return ("bluesky authors are keyed by DID (did:plc:...): the handle "
                f"{key!r} finds only data imported under it; resolve it to the DID first "
                "(com.atproto.identity.resolveHandle)")
    if platform == "mastodon" and "@" not in key:
        return f"mastodon authors are keyed user@host: {key!r} without its instance finds only data imported that way"
    return None


def mastodon_account(acct: str, instance: str) -> str:
    """The key of a status's account as ``instance`` reported it: local accounts come without
    their domain (``Gargron``), remote ones with it (``Gargron@mastodon.social``)."""
    return author_key("mastodon", acct if "@" in acct.lstrip("@") else f"{acct.lstrip('@')}@{instance}")
