from urllib.parse import parse_qs, urlsplit

import pytest

from apuppet.agent.credentials import Credentials
from apuppet.config import DEFAULT_PASSWORD_CHARS


def test_strong_by_default():
    seen = {Credentials.generate() for _ in range(200)}
    assert len(seen) == 200
    for c in seen:
        assert len(c.session) == 10 and c.session.isdigit() and c.session[0] != "0"
        assert len(c.password) == 8 and set(c.password) <= set(DEFAULT_PASSWORD_CHARS)
    # All of the alphabet is in use (a crude check that the choice is not biased to a few characters).
    assert len({ch for c in seen for ch in c.password}) > len(DEFAULT_PASSWORD_CHARS) * 0.8


def test_apuppet_format():
    c = Credentials.generate("apuppet")
    assert len(c.session) == 8 and c.session.isdigit()
    assert len(c.password) == 4 and c.password.isdigit()


def test_unknown_style():
    with pytest.raises(ValueError, match="unknown credential style"):
        Credentials.generate("weak")


def test_link_and_repr_hide_nothing_they_should_not():
    c = Credentials("1234567890", "a&b=c#d")
    link = c.link("https://srv.example.org/web-admin/")
    assert link.startswith("https://srv.example.org/web-admin/?session=1234567890&pin=")
    assert parse_qs(urlsplit(link).query) == {"session": ["1234567890"], "pin": ["a&b=c#d"]}
    assert c.link("http://h/?x=1").startswith("http://h/?x=1&session=")
    assert "a&b=c#d" not in repr(c)
