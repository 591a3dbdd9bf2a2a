"""Who may do what in the inbox: accounts, teams (= case queues), roles, password checks.

Rights are resolved on every request from the settings (local accounts) or from the identity
provider's claims kept in the session (OIDC), so a changed account file takes effect at the next
click. Teams are the queues the routing rules name plus ``inbox.teams``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import TypeAdapter, ValidationError

from stimmung.config import ConfigError, InboxAccount, Settings

HASHER = PasswordHasher()  # Argon2id with argon2-cffi's RFC 9106 low-memory defaults
# Verified when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = HASHER.hash("no such account")
ROLES = ("agent", "lead")


def hash_password(password: str) -> str:
    if len(password) < 12:
        raise ValueError("use a password of at least 12 characters")
    return HASHER.hash(password)


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    teams: dict[str, str] = field(default_factory=dict)  # team -> agent|lead
    admin: bool = False
    via: str = "local"  # local | oidc

    def queues(self, all_teams: Iterable[str]) -> list[str]:
        """The queues this user sees (admins: all)."""
        return sorted(all_teams) if self.admin else sorted(self.teams)

    def can_work(self, queue: str) -> bool:
        return self.admin or queue in self.teams

    def leads(self, all_teams: Iterable[str]) -> list[str]:
        return sorted(all_teams) if self.admin else sorted(t for t, r in self.teams.items() if r == "lead")

    def to_session(self) -> dict[str, Any]:
        return {"username": self.username, "display_name": self.display_name, "teams": dict(self.teams),
                "admin": self.admin, "via": self.via}

    @classmethod
    def from_session(cls, data: dict[str, Any]) -> "User":
        return cls(data["username"], data.get("display_name") or data["username"], dict(data.get("teams") or {}),
                   bool(data.get("admin")), data.get("via", "local"))


class Directory:
    """The accounts of ``inbox.accounts`` plus ``inbox.accounts_file``, and the team list."""

    def __init__(self, settings: Settings):
        inbox = settings.inbox
        accounts = list(inbox.accounts)
        if inbox.accounts_file is not None:
            accounts += load_accounts_file(inbox.accounts_file)
        self.accounts: dict[str, InboxAccount] = {}
        for account in accounts:
            if account.username in self.accounts:
                raise ConfigError(f"inbox accounts: {account.username!r} is defined twice")
            self.accounts[account.username] = account
        self.teams = sorted({r.queue for r in settings.crm.routes} | set(inbox.teams))
        for account in self.accounts.values():
            unknown = set(account.teams) - set(self.teams)
            if unknown:
                raise ConfigError(f"inbox account {account.username!r}: unknown team(s) {sorted(unknown)}; "
                                  f"known: {self.teams} (crm.routes queues and inbox.teams)")

    def user(self, username: str, via: str = "local") -> User | None:
        account = self.accounts.get(username)
        if account is None:
            return None
        return User(account.username, account.display_name or account.username, dict(account.teams), account.admin, via)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches; None otherwise (same work either way)."""
        account = self.accounts.get(username)
        stored = account.password_hash.get_secret_value() if account and account.password_hash else _DUMMY_HASH
        try:
            HASHER.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if account is None or account.password_hash is None:
            return None
        return self.user(username)

    def members(self, team: str) -> list[str]:
        return sorted(name for name, a in self.accounts.items() if team in a.teams)

    def from_claims(self, claims: dict[str, Any], username_claim: str, roles_claim: str) -> User | None:
        """Rights for an OIDC sign-in: the claim's 'team:role'/'admin' entries, else the local
        account of the same name; None when neither grants anything."""
        username = str(claims.get(username_claim) or claims.get("sub") or "")
        if not username:
            return None
        raw = claims.get(roles_claim) or []
        entries = [raw] if isinstance(raw, str) else list(raw)
        teams: dict[str, str] = {}
        admin = False
        for entry in map(str, entries):
            if entry == "admin":
                admin = True
                continue
            team, _, role = entry.partition(":")
            if team in self.teams and role in ROLES and teams.get(team) != "lead":
                teams[team] = role
        display = str(claims.get("name") or username)
        if teams or admin:
            return User(username, display, teams, admin, "oidc")
        local = self.user(username, via="oidc")
        if local is not None and (local.teams or local.admin):
            return local
        return None


def load_accounts_file(path: Path) -> list[InboxAccount]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"inbox.accounts_file {path}: cannot read it: {err}") from None
    try:
        return TypeAdapter(list[InboxAccount]).validate_python(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"inbox.accounts_file {path}: {where}: {first['msg']}") from None
