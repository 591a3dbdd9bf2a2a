import pytest

from stimmung.schemas.pseudonym import Pseudonymizer

KEY = "k" * 32


def test_same_author_same_pseudonym_regardless_of_case_and_at_sign():
    p = Pseudonymizer(KEY)
    assert p.pseudonym("mastodon", "@Jana") == p.pseudonym("Mastodon", "jana")
    assert p.pseudonym("mastodon", "jana").startswith("psn_")


def test_pseudonym_depends_on_key_platform_and_handle_and_hides_the_handle():
    p, q = Pseudonymizer(KEY), Pseudonymizer("x" * 32)
    assert p.pseudonym("mastodon", "jana") != q.pseudonym("mastodon", "jana")
    assert p.pseudonym("mastodon", "jana") != p.pseudonym("bluesky", "jana")
    assert p.pseudonym("mastodon", "jana") != p.pseudonym("mastodon", "jan")
    assert "jana" not in p.pseudonym("mastodon", "jana")


def test_short_keys_are_refused_and_the_key_never_shows():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymizer("short")
    assert KEY not in repr(Pseudonymizer(KEY))
