#!/usr/bin/env bash
# Install or update apuppet on this host, then (re)start it. Debian 12, Ubuntu 22.04 and 24.04; run as root or
# through sudo. Run it again after editing config.yaml (e.g. `nat: true` + `public_ip`) to apply the change.
#
#   sudo ./install.sh [--config FILE]
#
# It installs the system packages it needs (python3-venv; certbot with is_certbot_enabled; coturn with turn: true,
# configured for the credentials the server mints), creates a virtualenv
# (.venv) with apuppet from this checkout, validates config.yaml (a wrong file: a message, nothing changed),
# generates the missing secrets, installs and (re)starts the systemd unit `apuppet` when systemd runs (otherwise
# prints the command that runs the server in the foreground), then prints the web-admin URL, the API secret for
# the agents and the firewall openings. docs/deployment.md explains it all.
#
# Environment, for CI and unusual hosts:
#   APUPPET_SKIP_APT=1     do not install system packages     APUPPET_NO_SYSTEMD=1  act as if systemd did not run
#   APUPPET_VENV=DIR       virtualenv (default: ./.venv)      APUPPET_USER=NAME     service user (default: apuppet)
#   APUPPET_PYTHON=PROG    Python (3.11+) making the venv     APUPPET_VENV_ARGS / APUPPET_PIP_ARGS: extra arguments
#   APUPPET_START_WAIT=SECONDS  how long to wait for the server to answer (default: 30)
#   APUPPET_TURN_CONF=FILE coturn's configuration, with turn: true (default: /etc/turnserver.conf)
#   With redis_url on 127.0.0.1/localhost (workers > 1, docs/deployment.md "Scale-out") it installs and starts
#   Debian's redis-server, on loopback only, with a password generated into credentials_dir/redis_password
#   (written to APUPPET_REDIS_CONF_DIR/apuppet.conf, default /etc/redis); a remote redis_url is left to its operator.
#   APUPPET_DEPS_SITE=DIR  a site-packages that already holds the dependencies: a new venv uses it (a .pth file)
#                          instead of downloading them; with APUPPET_PIP_ARGS=--no-deps (the tests reuse theirs)
#   Tests of the systemd path without systemd: APUPPET_SYSTEMD=1, APUPPET_UNIT_DIR=DIR
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ORIGINAL_ARGS=("$@")
CONFIG=${APUPPET_CONFIG:-$REPO/config.yaml}
while (($#)); do
    case $1 in
        -c | --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
        --config=*) CONFIG=${1#*=}; shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument '$1' (see ./install.sh --help)" >&2; exit 2 ;;
    esac
done
VENV=${APUPPET_VENV:-$REPO/.venv}
SERVICE_USER=${APUPPET_USER:-apuppet}
UNIT_FILE=${APUPPET_UNIT_DIR:-/etc/systemd/system}/apuppet.service
HOOK_FILE=/etc/letsencrypt/renewal-hooks/deploy/apuppet.sh

say() { printf '== %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
use_systemd() {
    [ -z "${APUPPET_NO_SYSTEMD:-}" ] && { [ -d /run/systemd/system ] || [ -n "${APUPPET_SYSTEMD:-}" ]; }
}
use_apt() { [ -z "${APUPPET_SKIP_APT:-}" ]; }

# -- root, only where it is needed ------------------------------------------------------------------------------------
if [ "$(id -u)" -ne 0 ] && { use_apt || use_systemd; }; then
    command -v sudo >/dev/null 2>&1 || die "run me as root (apt and systemd need it)"
    say "asking sudo for root rights (apt, systemd)"
    exec sudo --preserve-env=APUPPET_SKIP_APT,APUPPET_NO_SYSTEMD,APUPPET_VENV,APUPPET_USER,APUPPET_PYTHON,APUPPET_VENV_ARGS,APUPPET_PIP_ARGS,APUPPET_DEPS_SITE,APUPPET_CONFIG,APUPPET_SYSTEMD,APUPPET_UNIT_DIR,APUPPET_TURN_CONF \
        "$REPO/install.sh" "${ORIGINAL_ARGS[@]}"
fi
[ -f "$CONFIG" ] || die "$CONFIG does not exist (the repository ships a config.yaml to start from)"
CONFIG=$(cd "$(dirname "$CONFIG")" && pwd -P)/$(basename "$CONFIG")

# -- system packages --------------------------------------------------------------------------------------------------
APT_UPDATED=""
apt_install() {
    use_apt || return 0
    local need=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
    done
    ((${#need[@]})) || return 0
    say "installing system packages: ${need[*]}"
    if [ -z "$APT_UPDATED" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

python_ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; }
pick_python() {
    local py
    for py in ${APUPPET_PYTHON:-} python3 python3.13 python3.12 python3.11; do
        if command -v "$py" >/dev/null 2>&1 && python_ok "$py"; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

if use_apt; then
    command -v apt-get >/dev/null 2>&1 ||
        die "this installer uses apt (Debian/Ubuntu). Install Python 3.11+ with venv yourself, then run APUPPET_SKIP_APT=1 ./install.sh"
    # shellcheck disable=SC1091
    distro=$(. /etc/os-release 2>/dev/null && echo "${ID:-?} ${VERSION_ID:-?}")
    case $distro in
        "debian 12" | "ubuntu 22.04" | "ubuntu 24.04") ;;
        *) warn "tested on Debian 12 and Ubuntu 22.04/24.04, this is '$distro': continuing" ;;
    esac
    if python_ok python3; then
        apt_install python3 python3-venv ca-certificates
    else
        # Ubuntu 22.04 ships Python 3.10; its universe component has 3.11.
        apt_install python3.11 python3.11-venv ca-certificates
    fi
fi
PYTHON=$(pick_python) || die "Python 3.11 or newer is needed (python3 is $(python3 -V 2>&1 || echo missing))"

# -- virtualenv -------------------------------------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ] || ! python_ok "$VENV/bin/python"; then
    say "creating the virtualenv $VENV"
    # shellcheck disable=SC2086
    "$PYTHON" -m venv ${APUPPET_VENV_ARGS:-} "$VENV"
    if [ -n "${APUPPET_DEPS_SITE:-}" ]; then
        [ -d "$APUPPET_DEPS_SITE" ] || die "APUPPET_DEPS_SITE: $APUPPET_DEPS_SITE is not a folder"
        site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
        printf '%s\n' "$APUPPET_DEPS_SITE" >"$site/apuppet-deps-site.pth"
    fi
fi
STAMP="$VENV/.apuppet-installed"
want="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1) $("$VENV/bin/python" -V 2>&1)"
if [ ! -x "$VENV/bin/apuppet" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    say "installing apuppet from $REPO into $VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check ${APUPPET_PIP_ARGS:-} -e "$REPO"
    echo "$want" >"$STAMP"
else
    say "apuppet in $VENV is up to date"
fi
APUPPET="$VENV/bin/apuppet"

# -- config.yaml: validate, then generate the missing secrets ----------------------------------------------------------
say "checking $CONFIG"
if ! settings=$("$APUPPET" config check --config "$CONFIG" --shell); then
    die "$CONFIG is not valid (see above); nothing was changed. Fix it and run ./install.sh again."
fi
eval "$settings"
"$APUPPET" config secrets --config "$CONFIG" || die "could not write the secrets (see above)"

# -- redis-server (redis_url on this host): the directory the nodes of `workers` > 1 share --------------------------
setup_redis() {
    # The URL parsed as the nodes parse it (urllib.parse.urlsplit): IPv6 hosts, passwords holding '@', rediss://.
    local workers host local has_password
    read -r workers host local has_password < <("$VENV/bin/python" -c 'import sys
from urllib.parse import urlsplit
from apuppet.config import load
c, _ = load(sys.argv[1])
u = urlsplit(c.redis_url)
host = u.hostname or "localhost"
local = int(host in ("127.0.0.1", "localhost", "::1"))
print(c.workers, (host if c.redis_url else "-").replace(" ", "_"), local, int(u.password is not None))' "$CONFIG")
    [ "$host" != "-" ] || return 0
    if [ "$local" != 1 ]; then
        say "redis_url points at $host: that Redis is run there, not here (docs/deployment.md, Scale-out)"
        return 0
    fi
    # Debian's redis-server, on loopback only; nothing needs persistence (entries expire in seconds).
    apt_install redis-server
    if use_systemd; then
        systemctl enable --quiet --now redis-server.service || die "redis-server did not start (journalctl -u redis-server)"
    fi
    if [ "$has_password" = 0 ]; then
        # Redis access is control of the cluster: a password, generated once, kept like the other secrets; the
        # nodes add it to a redis_url that has none.
        local pwfile=$CREDENTIALS_DIR/redis_password conf_dir=${APUPPET_REDIS_CONF_DIR:-/etc/redis}
        install -d -m 0700 "$CREDENTIALS_DIR"
        if [ ! -s "$pwfile" ]; then
            (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_hex(32))' >"$pwfile")
        fi
        chmod 0600 "$pwfile"
        if [ -d "$conf_dir" ]; then
            (umask 027 && printf '# written by apuppet install.sh\nbind 127.0.0.1 -::1\nrequirepass %s\n' \
                "$(cat "$pwfile")" >"$conf_dir/apuppet.conf")
            chown --reference="$conf_dir" "$conf_dir/apuppet.conf" 2>/dev/null || true
            if [ -f "$conf_dir/redis.conf" ] && ! grep -qx "include $conf_dir/apuppet.conf" "$conf_dir/redis.conf"; then
                printf 'include %s\n' "$conf_dir/apuppet.conf" >>"$conf_dir/redis.conf"
            fi
        fi
        # Also applied to the running server, which then needs no restart.
        "$VENV/bin/python" -c 'import sys
from pathlib import Path
import redis
from apuppet.config import load
from apuppet.cluster.node import redis_url
c, base = load(sys.argv[1])
password = Path(sys.argv[2]).read_text().strip()
for url in (redis_url(c, base), c.redis_url):
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        client.config_set("requirepass", password)
        break
    except redis.AuthenticationError:
        continue
    except redis.ResponseError as exc:
        if "AUTH" not in str(exc) and "NOAUTH" not in str(exc):
            raise
    finally:
        client.close()
else:
    sys.exit("cannot set the password of the local Redis: it has another one (put it in redis_url)")' \
            "$CONFIG" "$pwfile" || die "could not set the password of the local redis-server"
        say "the local Redis requires the password in $pwfile"
    fi
    say "apuppet runs $workers node(s) here on the local Redis ($host)"
}
setup_redis

# -- coturn (turn: true): TURN for browsers on networks that drop UDP --------------------------------------------------
TURN_CONF=${APUPPET_TURN_CONF:-/etc/turnserver.conf}
TURN_TLS_DIR=${APUPPET_TURN_TLS_DIR:-/etc/coturn/apuppet}
setup_coturn() {
    [ "$TURN" = 1 ] || return 0
    apt_install coturn
    local group="" new changed="" cert_args=()
    if [ "$(id -u)" -eq 0 ] && getent group turnserver >/dev/null 2>&1; then group=turnserver; fi
    if [ "$TLS" = 1 ]; then
        # coturn runs as its own user: it gets its own copy of the web server's certificate (the certbot hook
        # refreshes it).
        install -d -m 0750 ${group:+-g "$group"} "$TURN_TLS_DIR"
        install -m 0644 "$TLS_CERT" "$TURN_TLS_DIR/fullchain.pem"
        install -m 0640 ${group:+-g "$group"} "$TLS_KEY" "$TURN_TLS_DIR/privkey.pem"
        cert_args=(--cert "$TURN_TLS_DIR/fullchain.pem" --key "$TURN_TLS_DIR/privkey.pem")
    fi
    new=$("$APUPPET" config coturn --config "$CONFIG" "${cert_args[@]}") ||
        die "could not make coturn's configuration (see above)"
    if [ "$(cat "$TURN_CONF" 2>/dev/null)" != "$new" ]; then
        say "writing coturn's configuration $TURN_CONF (shared secret from $CREDENTIALS_DIR/turn_secret)"
        (umask 027 && printf '%s\n' "$new" >"$TURN_CONF.new")
        [ -z "$group" ] || chgrp "$group" "$TURN_CONF.new"
        mv -f "$TURN_CONF.new" "$TURN_CONF"
        changed=1
    fi
    if use_systemd; then
        # Debian's coturn before 4.6 starts only when /etc/default/coturn says so.
        [ ! -f /etc/default/coturn ] || sed -i 's/^#*TURNSERVER_ENABLED=.*/TURNSERVER_ENABLED=1/' /etc/default/coturn
        systemctl enable --quiet coturn.service
        if [ -n "$changed" ] || ! systemctl is-active --quiet coturn.service; then
            say "(re)starting coturn"
            systemctl restart coturn.service
        else
            say "coturn is running with this configuration: not restarted"
        fi
    fi
}

final_message() {
    local udp=${UDP_RANGE/-/:} ufw_cmd="" port
    echo
    "$APUPPET" config check --config "$CONFIG" --show-secret
    echo
    for port in $TCP_PORTS; do ufw_cmd+="ufw allow $port/tcp && "; done
    if [ "$TURN" = 1 ]; then
        ufw_cmd+="ufw allow $TURN_PORT && ufw allow ${TURN_RELAY_RANGE/-/:}/udp && "
        [ "$TLS" = 0 ] || ufw_cmd+="ufw allow $TURN_TLS_PORT/tcp && "
    fi
    echo "  with ufw:  ${ufw_cmd}ufw allow $udp/udp"
    if use_systemd; then
        echo "  logs:      journalctl -u apuppet -f"
    fi
    echo "  check:     $APUPPET doctor --config $CONFIG"
}

# -- no systemd: say how to run it ------------------------------------------------------------------------------------
if ! use_systemd; then
    printf -v run_cmd 'cd %q && %q serve --config %q' "$BASE" "$APUPPET" "$CONFIG"
    setup_coturn
    say "systemd is not running here: start the server in the foreground with"
    echo
    echo "    $run_cmd"
    if [ "$TURN" = 1 ]; then
        echo
        echo "  and coturn with"
        echo
        echo "    turnserver -c $TURN_CONF"
    fi
    if [ "$CERTBOT" = 1 ] && [ "$TLS" = 0 ]; then
        warn "is_certbot_enabled: certbot is only run with systemd; see docs/deployment.md (TLS) to get a certificate"
    fi
    final_message
    exit 0
fi

# -- systemd: user, folders, access -----------------------------------------------------------------------------------
for path in "$REPO" "$VENV" "$CONFIG" "$BASE" "$CREDENTIALS_DIR" "$DATA_DIR" "$RECORDINGS_DIR"; do
    case $path in *[[:space:]]*) die "'$path' contains white space, which systemd units cannot hold: move it" ;; esac
done
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    say "creating the system user $SERVICE_USER"
    useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi
as_service_user() { runuser -u "$SERVICE_USER" -- "$@"; }
service_can_read() {
    as_service_user test -r "$CONFIG" -a -x "$VENV/bin/python" -a -r "$REPO/apuppet/__init__.py" -a -x "$BASE"
}
if ! service_can_read; then
    # Typically the checkout is in a home folder (0700/0750): let the service user pass through (not list) the
    # folders above it, nothing more.
    apt_install acl
    command -v setfacl >/dev/null 2>&1 || die "setfacl is missing (apt-get install acl)"
    dir=$REPO
    while [ "$dir" != / ]; do
        dir=$(dirname "$dir")
        if ! as_service_user test -x "$dir"; then
            say "letting $SERVICE_USER pass through $dir (setfacl -m u:$SERVICE_USER:x)"
            setfacl -m "u:$SERVICE_USER:x" "$dir"
        fi
    done
    service_can_read || die "user $SERVICE_USER cannot read $REPO or $CONFIG: check their permissions (chmod -R o+rX), or clone into /opt/apuppet"
fi
install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$CREDENTIALS_DIR"
chown -R "$SERVICE_USER:$SERVICE_USER" "$CREDENTIALS_DIR"
install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DATA_DIR"
# Session recordings show people's screens: the service user's alone (made even with record_sessions off, since
# the unit lists it among its writable paths).
install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$RECORDINGS_DIR"
if [ "$TLS" = 1 ]; then
    for file in "$TLS_CERT" "$TLS_KEY"; do
        as_service_user test -r "$file" ||
            die "user $SERVICE_USER cannot read $file: copy it into $CREDENTIALS_DIR/tls/ or give it read access"
    done
fi

# -- systemd: unit, (re)start -----------------------------------------------------------------------------------------
render() {
    local text
    text=$(<"$1")
    text=${text//@REPO@/"$REPO"}
    text=${text//@BASE@/"$BASE"}
    text=${text//@VENV@/"$VENV"}
    text=${text//@CONFIG@/"$CONFIG"}
    text=${text//@USER@/"$SERVICE_USER"}
    text=${text//@CREDENTIALS_DIR@/"$CREDENTIALS_DIR"}
    text=${text//@DATA_DIR@/"$DATA_DIR"}
    text=${text//@RECORDINGS_DIR@/"$RECORDINGS_DIR"}
    text=${text//@TLS_DIR@/"$CREDENTIALS_DIR/tls"}
    text=${text//@SERVER_NAME@/"$SERVER_NAME"}
    text=${text//@TURN_TLS_DIR@/"$TURN_TLS_DIR"}
    printf '%s\n' "$text"
}
unit=$(render "$REPO/deploy/apuppet.service.in")
if [ "$(cat "$UNIT_FILE" 2>/dev/null)" != "$unit" ]; then
    say "installing $UNIT_FILE"
    printf '%s\n' "$unit" >"$UNIT_FILE"
    systemctl daemon-reload
fi
systemctl enable --quiet apuppet.service

# What a restart applies, and what a reload (SIGHUP) applies: a renewed certificate needs no restart.
applied_state() {
    {
        cat "$UNIT_FILE" "$CONFIG" "$STAMP"
        git -C "$REPO" rev-parse HEAD 2>/dev/null || true
    } | sha256sum | cut -d' ' -f1
}
cert_state() { { [ "$TLS" = 0 ] || cat "$TLS_CERT" "$TLS_KEY"; } | sha256sum | cut -d' ' -f1; }
APPLIED="$VENV/.apuppet-applied"
APPLIED_CERT="$VENV/.apuppet-applied-cert"
wait_ready() {
    local i
    for ((i = 0; i < ${APUPPET_START_WAIT:-30}; i++)); do
        sleep 1
        systemctl is-active --quiet apuppet.service || continue
        "$VENV/bin/python" -c 'import json, sys, urllib.request
sys.exit(json.load(urllib.request.urlopen(sys.argv[1], timeout=2)).get("janus") != "server_info")' "$PROBE_URL" \
            2>/dev/null && return 0
    done
    return 1
}
restart() {
    say "(re)starting apuppet"
    systemctl restart apuppet.service
    if ! wait_ready; then
        journalctl -u apuppet.service -n 30 --no-pager >&2 || true
        die "apuppet does not answer on $PROBE_URL (log above; also: $APUPPET doctor --config $CONFIG)"
    fi
    applied_state >"$APPLIED"
    cert_state >"$APPLIED_CERT"
}
apply() {
    if [ "$(cat "$APPLIED" 2>/dev/null)" != "$(applied_state)" ] || ! systemctl is-active --quiet apuppet.service; then
        restart
    elif [ "$(cat "$APPLIED_CERT" 2>/dev/null)" != "$(cert_state)" ]; then
        say "reloading the TLS certificate (SIGHUP, sessions continue)"
        systemctl reload apuppet.service
        cert_state >"$APPLIED_CERT"
    else
        say "apuppet is running with this configuration: not restarted"
    fi
}
apply

# -- certbot: Let's Encrypt for hostname, HTTP-01 through the running server ------------------------------------------
if [ "$CERTBOT" = 1 ]; then
    managed_cert="$CREDENTIALS_DIR/tls/fullchain.pem"
    managed_key="$CREDENTIALS_DIR/tls/privkey.pem"
    if [ "$TLS" = 1 ] && [ "$TLS_CERT" != "$managed_cert" ]; then
        say "tls_cert is set to $TLS_CERT: certbot is not used"
    else
        [[ $SERVER_NAME =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "hostname '$SERVER_NAME' is not a DNS name"
        apt_install certbot
        install -d -m 0755 "$ACME_DIR"
        install -d -m 0755 "$(dirname "$HOOK_FILE")"
        render "$REPO/deploy/certbot-deploy-hook.sh.in" >"$HOOK_FILE"
        chmod 0755 "$HOOK_FILE"
        if [ ! -s "/etc/letsencrypt/live/$SERVER_NAME/fullchain.pem" ]; then
            say "asking Let's Encrypt for a certificate for $SERVER_NAME (HTTP-01 on port 80)"
            email_args=(--register-unsafely-without-email)
            [ -z "$EMAIL" ] || email_args=(--email "$EMAIL")
            eff=--no-eff-email
            [ "$SHARE_EMAIL" = 0 ] || [ -z "$EMAIL" ] || eff=--eff-email
            certbot certonly --non-interactive --agree-tos --webroot -w "$ACME_DIR" -d "$SERVER_NAME" \
                --cert-name "$SERVER_NAME" "${email_args[@]}" "$eff" ||
                die "certbot failed (above). Check that $SERVER_NAME points to this host, that TCP 80 is open and that web_http_port is 80; the server keeps running over plain HTTP."
        fi
        RENEWED_DOMAINS=$SERVER_NAME RENEWED_LINEAGE="/etc/letsencrypt/live/$SERVER_NAME" "$HOOK_FILE" --no-reload
        if [ "$TLS" = 0 ]; then
            "$APUPPET" config set --config "$CONFIG" "tls_cert=$managed_cert" "tls_key=$managed_key"
            TLS=1
            TLS_CERT=$managed_cert
            TLS_KEY=$managed_key
        fi
        apply
        systemctl enable --quiet --now certbot.timer 2>/dev/null || warn "certbot.timer not found: renew with cron"
    fi
fi

setup_coturn
final_message
