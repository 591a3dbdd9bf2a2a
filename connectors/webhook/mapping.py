"""Push payloads -> RawMention: Meta-style webhooks (Facebook page feed, Instagram comments) and
generic signed JSON (a RawMention, or a list of them, e.g. from a shop's review system)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterator

from pydantic import ValidationError

from stimmung.schemas.mention import RawMention


def _when(value: Any) -> datetime:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00"))
    return datetime.now(timezone.utc)


def from_meta(payload: Any) -> Iterator[RawMention | tuple[str, Any]]:
    """Each change with text becomes a mention; anything else is (reason, change) to dead-letter.
    Any JSON is accepted: a body of the wrong shape is one reason, never an exception (a 500)."""
    if not isinstance(payload, dict):
        yield (f"Meta webhook body is a JSON {type(payload).__name__}, expected an object", payload)
        return
    platform = {"page": "facebook", "instagram": "instagram"}.get(str(payload.get("object", "")), "meta")
    entries = payload.get("entry") or []
    for entry in entries if isinstance(entries, list) else [entries]:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            yield ("entry without a list of changes", entry)
            continue
        for change in changes:
            if not isinstance(change, dict):
                yield ("change is not a JSON object", change)
                continue
            value = change.get("value")
            value = value if isinstance(value, dict) else {}
            text = value.get("message") or value.get("text")
            native = value.get("comment_id") or value.get("post_id") or value.get("id")
            if not text or not native:
                if value.get("verb") == "remove" or change.get("field") not in ("feed", "comments", "mentions"):
                    continue  # deletions and non-content fields carry no mention
                yield ("change without text or id", change)
                continue
            sender = value.get("from")
            sender = sender if isinstance(sender, dict) else {}
            # The sender's id is the key (Instagram usernames can be renamed); the username is display only.
            handle = sender.get("id") or sender.get("username")
            try:
                yield RawMention(platform=platform, native_id=str(native), text=str(text),
                                 created_at=_when(value.get("created_time") or entry.get("time")),
                                 reply_to_id=str(value["parent_id"]) if value.get("parent_id") else None,
                                 thread_id=str(value["post_id"]) if value.get("post_id") else None,
                                 author={"handle": str(handle), "display_handle": sender.get("username"),
                                         "display_name": sender.get("name")} if handle else None,
                                 raw={"field": change.get("field"), "page": entry.get("id")})
            except (ValidationError, ValueError, TypeError, OverflowError, OSError) as err:
                # OverflowError/OSError: a timestamp far out of range; TypeError: an id of an odd type
                yield (f"invalid change: {err}", change)


def from_generic(payload: Any) -> Iterator[RawMention | tuple[str, Any]]:
    for item in payload if isinstance(payload, list) else [payload]:
        try:
            yield RawMention.model_validate(item)
        except ValidationError as err:
            yield (f"not a RawMention: {err.errors()[0]['loc']}: {err.errors()[0]['msg']}", item)
