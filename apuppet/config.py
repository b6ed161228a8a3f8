"""config.yaml: aPuppet's keys with aPuppet's defaults, plus apuppet's own.

Validation errors become one readable line per key (`ConfigError`), never a traceback: the file is edited by
people following the "behind NAT" guide, and `./install.sh` must refuse a wrong file before it changes anything.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Confusion-free alphabet: no 0/O/o, 1/I/i/l. aPuppet's list has `Z` twice and lacks `X`; this one is fixed.
DEFAULT_PASSWORD_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789"
API_SECRET_LENGTH = 16
ADMIN_SECRET_LENGTH = 24


class ConfigError(Exception):
    """A configuration problem, worded for the person editing config.yaml."""


class TurnServer(BaseModel):
    """A TURN server for the browsers. Without `username`/`credential` the server mints time-limited ones from
    `turn_secret` for every client (coturn's `use-auth-secret`)."""

    model_config = ConfigDict(extra="forbid")
    url: str
    username: str = ""
    credential: str = ""

    @property
    def static(self) -> bool:
        return bool(self.username or self.credential)

    @field_validator("url")
    @classmethod
    def _turn_url(cls, v: str) -> str:
        if not v.startswith(("turn:", "turns:")):
            raise ValueError("must start with turn: or turns:")
        return v


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # -- aPuppet's keys (spec §8.1) ------------------------------------------------------------------------
    hostname: str = ""
    email: str = ""
    nat: bool = False
    public_ip: str = ""
    api_http: bool = True
    api_http_port: int = Field(8088, ge=0, le=65535)
    api_https: bool = True
    api_https_port: int = Field(8089, ge=0, le=65535)
    api_wss: bool = True
    api_wss_port: int = Field(8989, ge=0, le=65535)
    admin_api_https: bool = False
    admin_api_https_port: int = Field(7889, ge=0, le=65535)
    is_nginx_enabled: bool = True
    web_http_port: int = Field(80, ge=0, le=65535)
    web_https_port: int = Field(443, ge=0, le=65535)
    rtp_port_range: str = "10000-10500"
    is_certbot_enabled: bool = True
    share_email: bool = True
    password_chars: str = DEFAULT_PASSWORD_CHARS

    # -- apuppet's keys -------------------------------------------------------------------------------------
    bind: str = "0.0.0.0"
    api_secret: str = ""
    admin_secret: str = ""
    viewer_access: bool = True
    credentials_dir: str = "credentials"
    data_dir: str = "data"
    tls_cert: str = ""
    tls_key: str = ""
    session_timeout: float = Field(60.0, gt=0)
    stun_server: str = ""
    turn_servers: list[TurnServer] = Field(default_factory=list)
    #: This host runs coturn (install.sh sets it up): browsers get turn:/turns: URLs on `hostname` (or
    #: `public_ip`) with credentials minted from `turn_secret`, generated into `credentials_dir` when empty.
    turn: bool = False
    #: coturn's `static-auth-secret`; credentials minted from it live `turn_ttl` seconds.
    turn_secret: str = ""
    turn_ttl: int = Field(86400, ge=60, le=30 * 86400)
    turn_port: int = Field(3478, ge=1, le=65535)
    turn_tls_port: int = Field(5349, ge=1, le=65535)
    #: UDP ports coturn relays from (open them with turn_port); outside rtp_port_range.
    turn_relay_range: str = "49152-49999"
    use_ipv6: bool = True
    max_request_bytes: int = Field(1 << 20, ge=1024)
    log_level: str = "info"
    # -- media abuse limits (docs/deployment.md) ------------------------------------------------------------
    #: Seconds a mountpoint waits for RTP from its creator's IP address before another source may latch it.
    rtp_latch_grace: float = Field(10.0, ge=0)
    #: WebRTC peer connections (each holds UDP ports of `rtp_port_range`) per Janus session and per client
    #: address; 0 means no limit.
    max_peers_per_session: int = Field(4, ge=0)
    max_peers_per_address: int = Field(16, ge=0)
    # -- API limits per client address (docs/deployment.md "Security model") --------------------------------
    #: Sized for hundreds of phones behind one carrier-NAT address (one session, two handles, one poll each).
    limit_sessions_per_address: int = Field(1000, ge=1)
    #: Viewer sessions (no API secret) alive per address, and how fast an address may create them.
    limit_viewer_sessions_per_address: int = Field(100, ge=1)
    limit_viewer_sessions_per_second: float = Field(5.0, gt=0)
    limit_viewer_session_burst: int = Field(50, ge=1)
    limit_handles_per_session: int = Field(32, ge=1)
    limit_polls_per_session: int = Field(4, ge=1)
    limit_polls_per_address: int = Field(1000, ge=1)
    limit_websockets_per_address: int = Field(500, ge=1)
    limit_connections_per_address: int = Field(2000, ge=1)
    #: Seconds a connection may sit idle between requests, and to send a request head or body.
    http_idle_timeout: float = Field(30.0, gt=0)
    http_header_timeout: float = Field(10.0, gt=0)
    http_body_timeout: float = Field(30.0, gt=0)
    # -- scale-out (docs/deployment.md "Scale-out") -----------------------------------------------------------
    #: Redis that the nodes of one service share (e.g. redis://127.0.0.1:6379/0); empty: one node, no Redis.
    redis_url: str = ""
    #: This node's name in Redis; empty: the host name and a random suffix (`--workers` appends -1, -2, …).
    node_name: str = ""
    #: Nodes `apuppet serve` starts on this host (each a process on one core); more than 1 needs `redis_url`.
    workers: int = Field(1, ge=1, le=256)
    # -- session limits (docs/deployment.md "Console") -------------------------------------------------------
    #: A viewer session (no API secret) is ended after this many minutes; 0: no limit. Fractions allowed.
    max_session_minutes: float = Field(0.0, ge=0)
    #: A viewer that sent no command over its data channel for this many minutes is disconnected; 0: never.
    viewer_idle_minutes: float = Field(0.0, ge=0)
    # -- session recording (docs/deployment.md "Recording") ------------------------------------------------
    #: Record what a watched device shows, as the H.264 it sends, one MP4 per support session.
    record_sessions: bool = False
    #: Relative to the config file, like data_dir.
    recordings_dir: str = "recordings"
    #: Days a recording is kept after its last write; 0 keeps them forever.
    recordings_keep_days: float = Field(30.0, ge=0)

    @field_validator("password_chars", mode="before")
    @classmethod
    def _chars(cls, v: Any) -> Any:
        if isinstance(v, list):
            v = "".join(str(c) for c in v)
        return v

    @field_validator("password_chars")
    @classmethod
    def _chars_distinct(cls, v: str) -> str:
        distinct = "".join(dict.fromkeys(v))
        if len(distinct) < 10:
            raise ValueError("needs at least 10 distinct characters")
        return distinct

    @field_validator("rtp_port_range", "turn_relay_range")
    @classmethod
    def _range(cls, v: str) -> str:
        parse_port_range(v)
        return v

    @field_validator("public_ip")
    @classmethod
    def _ip(cls, v: str) -> str:
        if v:
            try:
                ipaddress.ip_address(v)
            except ValueError:
                raise ValueError("must be an IP address such as 77.222.59.36") from None
        return v

    @field_validator("stun_server")
    @classmethod
    def _stun(cls, v: str) -> str:
        if v and not v.startswith(("stun:", "stuns:")):
            raise ValueError("must look like stun:host:port")
        return v

    @field_validator("recordings_dir")
    @classmethod
    def _folder(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name a folder, e.g. recordings")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, v: str) -> str:
        if v and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must look like redis://host:6379/0 (or rediss://, unix://)")
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("must be one of debug, info, warning, error")
        return v.lower()

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.nat and not self.public_ip:
            raise ValueError('nat: true needs public_ip (the address the Internet sees, e.g. "77.222.59.36")')
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        if self.turn and not (self.hostname or self.public_ip):
            raise ValueError("turn: true needs hostname or public_ip (the address browsers reach coturn at)")
        if not (self.turn or self.turn_secret) and any(not t.static for t in self.turn_servers):
            raise ValueError("a turn_servers entry without username and credential needs turn_secret")
        if self.workers > 1 and not self.redis_url:
            raise ValueError("workers above 1 need redis_url (the nodes share who holds what through Redis)")
        if self.turn:
            low, high = parse_port_range(self.turn_relay_range)
            rtp_low, rtp_high = self.port_range
            if low <= rtp_high and rtp_low <= high:
                raise ValueError("turn_relay_range must not overlap rtp_port_range")
        return self

    # -- derived values ---------------------------------------------------------------------------------------
    @property
    def port_range(self) -> tuple[int, int]:
        return parse_port_range(self.rtp_port_range)

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    def ice_servers(self) -> list[dict[str, Any]]:
        """The server's own RTCConfiguration iceServers: empty unless configured, so no public STUN server is ever
        waited for. TURN servers whose credentials are minted per browser are left out: the server's host (and
        NAT) candidates are what coturn relays to, and a relay of its own would only add a hop. The browsers'
        list is `apuppet.api.iceservers.browser_ice_servers`."""
        servers: list[dict[str, Any]] = []
        if self.stun_server:
            servers.append({"urls": self.stun_server})
        for turn in self.turn_servers:
            if turn.static:
                servers.append({"urls": turn.url, "username": turn.username, "credential": turn.credential})
        return servers


def parse_port_range(text: str) -> tuple[int, int]:
    parts = str(text).replace(" ", "").split("-")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError("must look like 10000-10500")
    low, high = int(parts[0]), int(parts[1])
    if not 1024 <= low <= high <= 65535:
        raise ValueError("must be two ports between 1024 and 65535, low first")
    return low, high


def _describe(errors: list[Any], raw: dict[str, Any]) -> str:
    lines = []
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        key = str(err["loc"][0]) if err["loc"] else ""
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key (check the spelling; see the configuration reference in README.md)")
        elif key in raw:
            lines.append(f"{loc}: {raw[key]!r} is not valid: {msg}")
        else:
            lines.append(f"{loc}: {msg}")
    return "\n".join(lines)


def validate(raw: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors(), raw)) from None


def load(path: str | os.PathLike[str] | None, overrides: dict[str, Any] | None = None) -> tuple[Config, Path]:
    """Read and validate config.yaml; returns the config and the folder relative paths are taken from."""
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read the configuration: {exc.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected key: value lines at the top level")
        raw = loaded
        base = p.resolve().parent
    if overrides:
        raw = {**raw, **overrides}
    return validate(raw), base


def resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def generate_secret(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


TURN_SECRET_LENGTH = 32
SECRET_LENGTHS = {"api_secret": API_SECRET_LENGTH, "admin_secret": ADMIN_SECRET_LENGTH}


def _secret_lengths(config: Config) -> dict[str, int]:
    """The secrets this configuration keeps in `credentials_dir`: coturn's only when this host runs coturn (with
    an outside TURN server, its operator hands out the secret)."""
    if config.turn:
        return {**SECRET_LENGTHS, "turn_secret": TURN_SECRET_LENGTH}
    return SECRET_LENGTHS


def read_secrets(config: Config, base: Path) -> tuple[Config, list[Path]]:
    """Empty secrets filled from `credentials_dir` without writing anything (what `config check` may do), and the
    files `ensure_secrets` would still have to generate."""
    folder = resolve(base, config.credentials_dir)
    updates: dict[str, str] = {}
    missing: list[Path] = []
    for key in _secret_lengths(config):
        if getattr(config, key):
            continue
        file = folder / key
        value = file.read_text(encoding="utf-8").strip() if file.exists() else ""
        if value:
            updates[key] = value
        else:
            missing.append(file)
    return (config.model_copy(update=updates) if updates else config), missing


def ensure_secrets(config: Config, base: Path) -> Config:
    """Fill empty secrets from `credentials_dir`, generating them (mode 0600) on first start."""
    config, missing = read_secrets(config, base)
    lengths = _secret_lengths(config)
    updates: dict[str, str] = {}
    for file in missing:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        value = generate_secret(config.password_chars, lengths[file.name])
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value + "\n")
        os.chmod(file, stat.S_IRUSR | stat.S_IWUSR)
        updates[file.name] = value
    return config.model_copy(update=updates) if updates else config
