"""The chaos soak's seeded workload: a JSONL import file of multilingual mentions plus malformed
lines of every kind we know, and the truth about it (which ids are good, which line is bad and why).

Good mentions are spread over the last three hours of event time with a burst of German and
English complaints about one brand in the last half hour, so the alerting role has a spike to
find (its detector is configured with a short warm-up by the soak). Bad lines are placed at
seeded random positions; each kind is one way an export goes wrong in practice.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

BRANDS = ["Nordbahn", "Flinkpost", "Kaffeewerk"]
SPIKE_BRAND = "Nordbahn"

# (language, template) — brand and a number are filled in; a few per language and mood.
TEMPLATES: dict[str, list[str]] = {
    "de": ["{brand} ist heute wieder total verspätet, ich bin echt sauer ({n})",
           "Danke {brand}, der Service war schnell und freundlich #{n}",
           "Hat jemand Infos, ob {brand} morgen fährt? Frage {n}",
           "Schon wieder kein Paket von {brand}, Erstattung verweigert. Unverschämt! {n}"],
    "en": ["{brand} lost my parcel again, worst service ever, I want a refund ({n})",
           "Great experience with {brand} today, thanks to the team #{n}",
           "Does anyone know when {brand} opens on Sunday? {n}"],
    "fr": ["{brand} est encore en retard, c'est inadmissible ({n})",
           "Merci {brand} pour la livraison rapide #{n}"],
    "es": ["{brand} me ha cancelado el pedido otra vez, fatal ({n})",
           "Muy contento con {brand}, todo perfecto #{n}"],
    "it": ["Il servizio di {brand} oggi è stato ottimo {n}"],
    "nl": ["{brand} is weer te laat, echt slecht ({n})"],
    "pl": ["{brand} znowu się spóźnia, fatalna obsługa ({n})"],
    "tr": ["{brand} bugün yine gecikti, çok kötü ({n})"],
    "ja": ["{brand}の配達がまた遅れました ({n})"],
    "ar": ["خدمة {brand} سيئة جدا اليوم ({n})"],
}
SPIKE_TEMPLATES = ["{brand} Zug fällt schon wieder aus, Verspätung ohne Ende, ich will mein Geld zurück ({n})",
                   "{brand} cancelled my train again, terrible, refund now ({n})"]

# Kind -> a function (rng, line number) -> the raw line bytes (without the newline).
def _good_fields(n: int) -> dict:
    return {"id": f"bad-{n}", "text": f"Nordbahn text {n}", "created_at": "2026-01-01T10:00:00Z", "author": f"@u{n}"}


def _dump(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


BAD_KINDS = {
    "broken_json": lambda n: b'{"id": "bad-%d", "text": "unterminated' % n,
    "not_an_object": lambda n: b'["bad", %d]' % n,
    "missing_id": lambda n: _dump({k: v for k, v in _good_fields(n).items() if k != "id"}),
    "missing_text": lambda n: _dump({k: v for k, v in _good_fields(n).items() if k != "text"}),
    "missing_created_at": lambda n: _dump({k: v for k, v in _good_fields(n).items() if k != "created_at"}),
    "empty_text": lambda n: _dump({**_good_fields(n), "text": "   "}),
    "bad_timestamp": lambda n: _dump({**_good_fields(n), "created_at": "yesterday-ish"}),
    "huge_timestamp": lambda n: _dump({**_good_fields(n), "created_at": 10**30}),
    "wrong_type_followers": lambda n: _dump({**_good_fields(n), "followers": "very many"}),
    "negative_count": lambda n: _dump({**_good_fields(n), "likes": -5}),
    "non_finite_number": lambda n: _dump({**_good_fields(n)}).replace(b"}", b', "shares": Infinity}'),
    "nan_number": lambda n: _dump({**_good_fields(n)}).replace(b"}", b', "likes": NaN}'),
    "text_is_object": lambda n: _dump({**_good_fields(n), "text": {"body": "Nordbahn als Objekt"}}),
    "author_is_object": lambda n: _dump({**_good_fields(n), "author": {"handle": "@x"}}),
    "huge_text": lambda n: _dump({**_good_fields(n), "text": "Nordbahn " + "x" * 200_000}),
    "huge_id": lambda n: _dump({**_good_fields(n), "id": "i" * 5000}),
    "nul_byte": lambda n: b'{"id": "bad-%d", "text": "Nord\x00bahn", "created_at": "2026-01-01T10:00:00Z"}' % n,
    "invalid_utf8": lambda n: b'{"id": "bad-%d", "text": "Nordbahn \xff\xfe kaputt", "created_at": "2026-01-01T10:00:00Z"}' % n,
}

# Not mentions and not errors either: the importer skips them by design (nothing to dead-letter).
SKIPPED_KINDS = {
    "empty_line": lambda n: b"",
    "whitespace_line": lambda n: b"   \t ",
}


@dataclass
class Workload:
    path: Path
    good_ids: set[str] = field(default_factory=set)          # native ids of the good mentions
    bad_lines: dict[int, str] = field(default_factory=dict)  # line number (1-based) -> kind
    skipped_lines: dict[int, str] = field(default_factory=dict)
    spike_mentions: int = 0

    @property
    def lines(self) -> int:
        return len(self.good_ids) + len(self.bad_lines) + len(self.skipped_lines)

    def describe(self) -> dict:
        kinds: dict[str, int] = {}
        for kind in self.bad_lines.values():
            kinds[kind] = kinds.get(kind, 0) + 1
        return {"file": str(self.path), "lines": self.lines, "good": len(self.good_ids), "bad": len(self.bad_lines),
                "bad_kinds": dict(sorted(kinds.items())), "skipped_blank": len(self.skipped_lines),
                "spike_mentions": self.spike_mentions, "languages": sorted(TEMPLATES)}


def write_workload(path: Path, mentions: int, seed: int, bad_share: float = 0.01,
                   kinds: list[str] | None = None, now: datetime | None = None) -> Workload:
    """Write ``mentions`` good lines plus ``bad_share`` of that many bad ones (at least one of every
    kind) and a few blank lines; return what is where."""
    rng = random.Random(seed)
    kinds = list(kinds or BAD_KINDS)
    now = now or datetime.now(timezone.utc)
    bad_total = max(len(kinds), round(mentions * bad_share))
    bad_plan = kinds + [rng.choice(kinds) for _ in range(bad_total - len(kinds))]
    skipped_plan = list(SKIPPED_KINDS) * max(1, bad_total // 20)
    slots = ["good"] * mentions + [f"bad:{k}" for k in bad_plan] + [f"skip:{k}" for k in skipped_plan]
    rng.shuffle(slots)
    spike_start = now - timedelta(minutes=30)
    workload = Workload(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        good = 0
        for line_no, slot in enumerate(slots, start=1):
            if slot == "good":
                good += 1
                native_id = f"chaos-{seed}-{good}"
                spike = rng.random() < 0.15
                if spike:
                    text = rng.choice(SPIKE_TEMPLATES).format(brand=SPIKE_BRAND, n=good)
                    created = spike_start + timedelta(seconds=rng.uniform(0, 25 * 60))
                    lang = None
                    workload.spike_mentions += 1
                else:
                    lang = rng.choice(list(TEMPLATES))
                    text = rng.choice(TEMPLATES[lang]).format(brand=rng.choice(BRANDS), n=good)
                    created = now - timedelta(hours=3) + timedelta(seconds=rng.uniform(0, 3 * 3600 - 60))
                record = {"id": native_id, "text": text, "created_at": created.isoformat(),
                          "author": f"@author{rng.randrange(max(10, mentions // 5))}",
                          "followers": rng.randrange(0, 50_000), "likes": rng.randrange(0, 200),
                          "shares": rng.randrange(0, 40), "replies": rng.randrange(0, 30)}
                if lang and rng.random() < 0.5:
                    record["lang"] = lang
                fh.write(_dump(record) + b"\n")
                workload.good_ids.add(native_id)
            elif slot.startswith("bad:"):
                kind = slot[4:]
                fh.write(BAD_KINDS[kind](line_no) + b"\n")
                workload.bad_lines[line_no] = kind
            else:
                kind = slot[5:]
                fh.write(SKIPPED_KINDS[kind](line_no) + b"\n")
                workload.skipped_lines[line_no] = kind
    return workload
