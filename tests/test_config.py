"""config.yaml: aPuppet's keys and defaults, readable errors, generated secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from apuppet.config import DEFAULT_PASSWORD_CHARS, ConfigError, ensure_secrets, load, validate

REPO = Path(__file__).resolve().parent.parent


def test_defaults_are_apuppets() -> None:
    c = validate({})
    assert (c.api_http_port, c.api_https_port, c.api_wss_port, c.admin_api_https_port) == (8088, 8089, 8989, 7889)
    assert (c.web_http_port, c.web_https_port) == (80, 443)
    assert c.port_range == (10000, 10500)
    assert c.nat is False and c.is_certbot_enabled is True and c.session_timeout == 60
    assert c.ice_servers() == []


def test_password_alphabet_is_fixed() -> None:
    assert "X" in DEFAULT_PASSWORD_CHARS and DEFAULT_PASSWORD_CHARS.count("Z") == 1
    assert len(set(DEFAULT_PASSWORD_CHARS)) == len(DEFAULT_PASSWORD_CHARS)
    assert not set("01IOilo") & set(DEFAULT_PASSWORD_CHARS)
    # aPuppet's list form (with its duplicate Z) is accepted and deduplicated.
    assert validate({"password_chars": ["A", "B", "Z", "Y", "Z", "c", "d", "e", "f", "g", "h"]}).password_chars == (
        "ABZYcdefgh"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"nat": True}, "public_ip"),
        ({"public_ip": "not-an-ip"}, "'not-an-ip' is not valid"),
        ({"rtp_port_range": "10000"}, "rtp_port_range: '10000' is not valid"),
        ({"rtp_port_range": "20000-10000"}, "low first"),
        ({"web_http_port": "eighty"}, "web_http_port: 'eighty' is not valid"),
        ({"web_http_port": 70000}, "web_http_port: 70000 is not valid"),
        ({"natt": True}, "natt: unknown key"),
        ({"tls_cert": "/x.pem"}, "tls_cert and tls_key go together"),
        ({"stun_server": "stun.example.org"}, "stun:host:port"),
        ({"turn_servers": [{"url": "http://x"}]}, "turn_servers.0.url"),
    ],
)
def test_errors_name_key_value_and_expectation(raw: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(raw)
    assert expected in str(info.value)
    assert "Traceback" not in str(info.value)


def test_nat_and_ice_servers() -> None:
    c = validate(
        {
            "nat": True,
            "public_ip": "77.222.59.36",
            "stun_server": "stun:stun.example.org:3478",
            "turn_servers": [{"url": "turn:turn.example.org:3478", "username": "u", "credential": "p"}],
        }
    )
    assert c.public_ip == "77.222.59.36"
    assert c.ice_servers() == [
        {"urls": "stun:stun.example.org:3478"},
        {"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"},
    ]


def test_load_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nat: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level"):
        load(bad)


def test_secrets_generated_once_with_mode_0600(tmp_path: Path) -> None:
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text("credentials_dir: creds\n")
    config, base = load(cfg_file)
    first = ensure_secrets(config, base)
    assert len(first.api_secret) == 16 and len(first.admin_secret) == 24
    assert set(first.api_secret) <= set(DEFAULT_PASSWORD_CHARS)
    for name in ("api_secret", "admin_secret"):
        mode = stat.S_IMODE((tmp_path / "creds" / name).stat().st_mode)
        assert mode == 0o600
    again = ensure_secrets(load(cfg_file)[0], base)
    assert (again.api_secret, again.admin_secret) == (first.api_secret, first.admin_secret)
    # A secret given in the file wins and nothing is generated for it.
    cfg_file.write_text("credentials_dir: creds2\napi_secret: mine\n")
    explicit = ensure_secrets(*load(cfg_file))
    assert explicit.api_secret == "mine" and not (tmp_path / "creds2" / "api_secret").exists()


def test_shipped_config_is_valid() -> None:
    config, _ = load(REPO / "config.yaml")
    assert config.web_http_port == 8080 and config.port_range == (10000, 10500)


def test_api_limits_reach_the_gateway_and_refuse_nonsense() -> None:
    from apuppet.server.app import limits_of

    limits = limits_of(validate({"limit_sessions_per_address": 7, "limit_viewer_sessions_per_second": 0.5}))
    assert limits.sessions_per_address == 7 and limits.viewer_session_rate == 0.5
    assert limits_of(validate({})).handles_per_session == validate({}).limit_handles_per_session == 32
    for key in ("limit_sessions_per_address", "limit_websockets_per_address", "http_idle_timeout"):
        with pytest.raises(ConfigError, match=f"^{key}: 0 is not valid"):
            validate({key: 0})
