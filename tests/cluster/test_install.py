"""./install.sh with `redis_url` on this host and `workers: 2`: it starts Debian's redis-server's unit and the
apuppet unit, whose one `serve` runs two nodes on the shared port. systemd is the stand-in of tests/ops (it runs
the unit's ExecStart); Redis is a real redis-server the test starts (the stand-in does not run the packaged one)."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ..ops.test_install import calls, install, site_config, systemd, venv  # noqa: F401  (fixtures)
from .conftest import RedisProcess, running_redis


@pytest.fixture
def local_redis() -> Iterator[RedisProcess]:
    with running_redis() as server:
        yield server


def test_install_with_workers_starts_redis_and_two_nodes(
    tmp_path: Path,
    venv: Path,  # noqa: F811
    systemd: dict[str, str],  # noqa: F811
    local_redis: RedisProcess,
) -> None:
    cfg = tmp_path / "site" / "config.yaml"
    cfg.parent.mkdir()
    cfg.write_text(site_config() + f'\nredis_url: "{local_redis.url}"\nworkers: 2\nnode_name: "inst"\n')
    conf_dir = tmp_path / "etc-redis"
    conf_dir.mkdir()
    (conf_dir / "redis.conf").write_text("port 6379\n")
    out = install(cfg, venv, APUPPET_REDIS_CONF_DIR=str(conf_dir), **systemd)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "apuppet runs 2 node(s) here on the local Redis (127.0.0.1)" in out.stdout
    assert "systemctl enable --quiet --now redis-server.service" in calls(systemd)
    # Redis access is control of the cluster: install.sh gave the local Redis a password, kept like the other
    # secrets, in effect at once and for the packaged server's next start; the nodes use it.
    pwfile = cfg.parent / "credentials" / "redis_password"
    password = pwfile.read_text().strip()
    assert len(password) >= 32 and stat.S_IMODE(pwfile.stat().st_mode) == 0o600
    assert password not in out.stdout + out.stderr
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=local_redis.port).ping()
    assert f"requirepass {password}" in (conf_dir / "apuppet.conf").read_text()
    assert "bind 127.0.0.1 -::1" in (conf_dir / "apuppet.conf").read_text()
    assert f"include {conf_dir}/apuppet.conf" in (conf_dir / "redis.conf").read_text()
    client = redis.Redis(port=local_redis.port, password=password, decode_responses=True)
    try:
        deadline = time.monotonic() + 30
        while client.exists("apuppet:node:inst-1", "apuppet:node:inst-2") != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        records = [json.loads(client.get(f"apuppet:node:inst-{i}") or "{}") for i in (1, 2)]
        assert records[0]["rtp"] == "10000-10250" and records[1]["rtp"] == "10251-10500"
    finally:
        client.close()


def test_a_remote_redis_is_left_to_its_operator(tmp_path: Path, venv: Path) -> None:  # noqa: F811
    cfg = tmp_path / "config.yaml"
    # Parsed as the nodes parse it (urlsplit): a password holding '@' is no part of the host.
    cfg.write_text(site_config() + '\nredis_url: "rediss://:hunter2@pw@10.0.0.5:6379/0"\nworkers: 2\n')
    out = install(cfg, venv)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "redis_url points at 10.0.0.5: that Redis is run there, not here" in out.stdout
    assert "hunter2" not in out.stdout + out.stderr and "pw@" not in out.stdout + out.stderr
    assert not (tmp_path / "credentials" / "redis_password").exists()
