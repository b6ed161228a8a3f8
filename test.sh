#!/usr/bin/env bash
# Sets up everything the test suite needs on Debian 12 / Ubuntu (system packages, a virtualenv) and runs it:
# lint, then every test (unit, real sockets, real aiortc peers, real Chromium). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
# janus: the reference gateway our compatibility tests also run against; coturn, nftables, iproute2: the TURN tests
# (a browser in a network namespace whose UDP is dropped).
for pkg in python3-venv chromium xvfb xauth janus coturn nftables iproute2 redis-server; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "== installing system packages: ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi
echo "== installing apuppet and test dependencies"
.venv/bin/pip install -q --upgrade pip >/dev/null
# A recent setuptools in the test venv lets tests/ops/test_install.py install apuppet without downloading anything.
.venv/bin/pip install -q -e '.[test]' 'setuptools>=77'

echo "== ruff"
.venv/bin/ruff check apuppet tests bench
.venv/bin/ruff format --check apuppet tests bench

echo "== mypy"
.venv/bin/mypy

echo "== pytest"
# Two workers: most of the suite waits (browsers, video, timeouts) rather than computes, but a third worker on a
# two-core machine starved the browser tests now and then (a login that took longer than its 30 s wait).
# Each test module stays on one worker (tests/conftest.py); APUPPET_TEST_WORKERS=0 (or `-n 0`) runs it in one process.
exec .venv/bin/python -m pytest -n "${APUPPET_TEST_WORKERS:-2}" --dist loadgroup "$@"
