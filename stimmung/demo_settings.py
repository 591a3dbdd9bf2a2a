"""What `stimmung demo` establishes when the settings lack it — a local pseudonymisation key,
the sample's brands, case routes for the sample, an inbox with a demo account — and the default
settings file it writes all of it to, so that later commands (`search author:`, `erase`,
`consent`, `worker`, `inbox`) work without flags (issue #15, item 8).

The file is merged, never overwritten: keys already in it stay; only the demo account (new
password each demo) and the connection to the local stack are refreshed. Secrets live in files
of their own next to it (0600); the settings name those files.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import yaml

from stimmung.config import Settings, default_config_path

DEMO_USER = "demo"
HEADER = ("# Written by `stimmung demo`: what the demo established, read by every command when neither\n"
          "# --config nor STIMMUNG_CONFIG names a settings file. Edit freely; a later demo keeps your keys\n"
          "# and only refreshes the demo account and the address of the local stack.\n")


def sample_brands() -> list[dict[str, Any]]:
    path = Path(str(resources.files("stimmung").joinpath("data", "sample_brands.yaml")))
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def demo_routes(brand_names: list[str]) -> list[dict[str, Any]]:
    """Queues for the sample: complaints to support, legal threats to legal, praise to marketing."""
    return [
        {"name": "legal", "queue": "legal", "priority": "P2",
         "query": "Anwalt* OR lawyer* OR Klage OR verklag* OR Datenschutz* OR DSGVO OR GDPR OR Verbraucherzentrale"},
        {"name": "complaints", "queue": "support", "priority": "P2", "brands": list(brand_names),
         "sentiments": ["negative"], "first_response_sla_s": 4 * 3600},
        {"name": "praise", "queue": "marketing", "priority": "P4", "brands": list(brand_names),
         "sentiments": ["positive"], "first_response_sla_s": 24 * 3600},
    ]


def _secret_file(path: Path, value: str, replace: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if replace or not path.exists():
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        tmp.replace(path)
    return path


@dataclass
class Established:
    """What the demo set up: for its own processes (environment) and for the settings file."""

    file_values: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    password: str | None = None
    password_file: Path | None = None
    notes: list[str] = field(default_factory=list)


def establish(settings: Settings, key_file: Path, start_inbox: bool) -> Established:
    """Fill what the settings lack for the demo. ``key_file``: where a new local key goes."""
    from stimmung.inbox.accounts import hash_password
    from stimmung.pipeline.privacy import ensure_local_key_file

    out = Established()
    values = out.file_values
    if not (settings.privacy.pseudonym_key or settings.privacy.pseudonym_key_file):
        ensure_local_key_file(key_file)
        values["privacy"] = {"pseudonym_key_file": str(key_file)}
        out.env["STIMMUNG_PRIVACY__PSEUDONYM_KEY_FILE"] = str(key_file)
        out.notes.append(f"no pseudonymisation key configured: using the local demo key {key_file} "
                         "(production: privacy.pseudonym_key_file)")
    brand_names = [b.name for b in settings.brands]
    if not settings.brands:
        brands = sample_brands()
        brand_names = [b["name"] for b in brands]
        values["brands"] = brands
        out.env["STIMMUNG_BRANDS"] = json.dumps(brands)
        out.notes.append(f"no brands configured: tagging with the sample's {', '.join(brand_names)}")
    crm: dict[str, Any] = {}
    if not settings.crm.routes:
        crm["routes"] = demo_routes(brand_names)
        out.env["STIMMUNG_CRM__ROUTES"] = json.dumps(crm["routes"])
        out.notes.append("no case routes configured: negative mentions of the brands go to support, positive "
                         "ones to marketing, legal threats to legal")
    if crm:
        values["crm"] = crm
    # The sample's dates are fixed: keep them searchable however old they get.
    values["elasticsearch"] = {"url": f"http://127.0.0.1:{settings.stack.es_http_port}", "retention_days": 0}
    values["kafka"] = {"bootstrap_servers": f"127.0.0.1:{settings.stack.kafka_port}"}
    values["stack"] = {"state_dir": str(settings.stack.state_dir), "kafka_port": settings.stack.kafka_port,
                       "kafka_controller_port": settings.stack.kafka_controller_port,
                       "es_http_port": settings.stack.es_http_port, "es_transport_port": settings.stack.es_transport_port}
    out.env["STIMMUNG_ELASTICSEARCH__RETENTION_DAYS"] = "0"
    out.env["STIMMUNG_KAFKA__BOOTSTRAP_SERVERS"] = values["kafka"]["bootstrap_servers"]
    out.env["STIMMUNG_ELASTICSEARCH__URL"] = values["elasticsearch"]["url"]
    if start_inbox:
        folder = default_config_path().parent
        inbox: dict[str, Any] = {}
        if not (settings.inbox.session_secret or settings.inbox.session_secret_file):
            session_key = _secret_file(folder / "inbox-session.key", secrets.token_urlsafe(48), replace=False)
            inbox["session_secret_file"] = str(session_key)
            inbox["cookie_secure"] = False  # the demo serves plain HTTP on loopback
            out.env["STIMMUNG_INBOX__SESSION_SECRET_FILE"] = str(session_key)
            out.env["STIMMUNG_INBOX__COOKIE_SECURE"] = "false"
        out.password = secrets.token_urlsafe(12)
        out.password_file = _secret_file(folder / "demo-inbox-password", out.password, replace=True)
        account = {"username": DEMO_USER, "display_name": "Demo (all teams)", "admin": True,
                   "password_hash": hash_password(out.password)}
        others = [a.model_dump(mode="json", exclude_none=True) for a in settings.inbox.accounts if a.username != DEMO_USER]
        for other in others:  # SecretStr dumps as '**********': keep the real hash
            match = next(a for a in settings.inbox.accounts if a.username == other["username"])
            if match.password_hash is not None:
                other["password_hash"] = match.password_hash.get_secret_value()
        inbox["accounts"] = [*others, account]
        if "pr" not in settings.inbox.teams:
            inbox["teams"] = [*settings.inbox.teams, "pr"]
            out.env["STIMMUNG_INBOX__TEAMS"] = json.dumps(inbox["teams"])
        out.env["STIMMUNG_INBOX__ACCOUNTS"] = json.dumps(inbox["accounts"])
        values["inbox"] = inbox
    return out


def _merge_missing(base: dict[str, Any], extra: dict[str, Any], refresh: Callable[[tuple[str, ...]], bool],
                   path: tuple[str, ...] = ()) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        here = (*path, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_missing(out[key], value, refresh, here)
        elif key not in out or refresh(here):
            out[key] = value
    return out


class _PlainDumper(yaml.SafeDumper):
    """No &anchors/*aliases for lists that happen to be the same object: people edit this file."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


REFRESHED = {("inbox", "accounts"), ("elasticsearch", "url"), ("kafka", "bootstrap_servers"),
             ("elasticsearch", "retention_days")}


def write_settings_file(values: dict[str, Any], path: Path | None = None) -> Path:
    """Merge ``values`` into the settings file (default location) and return its path."""
    path = path or default_config_path()
    existing: dict[str, Any] = {}
    if path.is_file():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        existing = loaded if isinstance(loaded, dict) else {}
    merged = _merge_missing(existing, values, lambda here: here in REFRESHED or here[0] == "stack")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the demo account's hash
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(HEADER)
        yaml.dump(merged, fh, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True)
    tmp.replace(path)
    return path
