#!/usr/bin/env bash
# Sets up apuppet in ./.venv (Debian 12 / Ubuntu) and runs it. Without arguments: `apuppet demo`
# (server + virtual phone, prints the URL to open). With arguments: `apuppet ARGS`, e.g.
#   ./run.sh serve --config config.yaml
set -euo pipefail
cd "$(dirname "$0")"

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x .venv/bin/apuppet ] || [ pyproject.toml -nt .venv/bin/apuppet ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e .
    touch .venv/bin/apuppet
fi
if [ $# -eq 0 ]; then
    set -- demo
fi
exec .venv/bin/apuppet "$@"
