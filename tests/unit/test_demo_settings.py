"""What the demo writes to the default settings file: merged into what is there, never replacing
the user's keys; the demo account refreshed each run; secrets only in 0600 files."""

from __future__ import annotations

import yaml

from stimmung.config import default_config_path, load_settings
from stimmung.demo_settings import establish, write_settings_file
from stimmung.inbox.accounts import Directory


def test_the_demo_fills_what_is_missing_keeps_the_users_keys_and_refreshes_its_account(tmp_path):
    default_config_path().parent.mkdir(parents=True)
    default_config_path().write_text(yaml.safe_dump({
        "brands": [{"name": "Acme", "queries": ["Acme"]}],
        "elasticsearch": {"mentions_index": "my-mentions"},
        "inbox": {"accounts": [{"username": "lena", "teams": {"support": "lead"}}]}}))
    settings = load_settings()
    first = establish(settings, tmp_path / "demo.key", start_inbox=True)
    assert "STIMMUNG_BRANDS" not in first.env, "the user's brands stay"
    assert {r["name"] for r in first.file_values["crm"]["routes"]} == {"legal", "complaints", "praise"}
    assert first.file_values["crm"]["routes"][1]["brands"] == ["Acme"], "routes name the configured brands"
    path = write_settings_file(first.file_values)
    assert oct(path.stat().st_mode & 0o777) == "0o600" and "&id" not in path.read_text()
    assert oct(first.password_file.stat().st_mode & 0o777) == "0o600"
    assert first.password_file.read_text().strip() == first.password

    again = load_settings()
    assert [b.name for b in again.brands] == ["Acme"] and again.elasticsearch.mentions_index == "my-mentions"
    assert again.privacy.pseudonym_key_file == tmp_path / "demo.key" and again.inbox.cookie_secure is False
    directory = Directory(again)
    assert directory.authenticate("demo", first.password) is not None
    assert {"support", "marketing", "legal", "pr"} <= set(directory.teams)

    # a second demo: a new password, the old one stops working, lena stays, nothing else re-established
    second = establish(again, tmp_path / "other.key", start_inbox=True)
    assert "privacy" not in second.file_values and "crm" not in second.file_values
    write_settings_file(second.file_values)
    third = load_settings()
    assert sorted(a.username for a in third.inbox.accounts) == ["demo", "lena"]
    directory = Directory(third)
    assert directory.authenticate("demo", second.password) is not None
    assert directory.authenticate("demo", first.password) is None
