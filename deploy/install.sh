#!/bin/sh
# deploy/install.sh install|uninstall: put agentd on this server as a systemd service
# (`sudo make install-service` / `sudo make uninstall-service`). Non-interactive and
# idempotent: run it again after a `git pull` to upgrade.
#
#   user, group   agentd (static system user; via sysusers.d, else useradd)
#   app           /opt/agentd/venv (pip install of this checkout, not editable)
#   config        /etc/agentd/agentd.env (0600 root; from .env.example if absent, never overwritten;
#                 the unit copies it to /run/agentd at start and reload)
#   state         /var/lib/agentd (tmpfiles.d: incoming/ 2770 setgid, the rest 0750)
#   unit          /etc/systemd/system/agentd.service
#
# uninstall removes the unit, the app and the tmpfiles.d/sysusers.d entries; it keeps
# /var/lib/agentd, /etc/agentd and the agentd user (its files are still there).
#
# Environment: AGENTD_PYTHON (default /usr/bin/python3, >= 3.11); pip's own PIP_*
# variables pass through, e.g. PIP_NO_INDEX=1 PIP_FIND_LINKS=/srv/wheels for an
# offline install from a wheelhouse.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/agentd
VENV=$PREFIX/venv
CONF_DIR=/etc/agentd
ENV_FILE=$CONF_DIR/agentd.env
STATE_DIR=/var/lib/agentd
UNIT=/etc/systemd/system/agentd.service
TMPFILES=/etc/tmpfiles.d/agentd.conf
SYSUSERS=/etc/sysusers.d/agentd.conf
PYTHON=${AGENTD_PYTHON:-/usr/bin/python3}

# Whatever umask sudo hands us, the app must be readable by the agentd user.
umask 022

say() { echo "agentd-install: $*"; }
die() { echo "agentd-install: error: $*" >&2; exit 1; }

systemd_running() { [ -d /run/systemd/system ]; }

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root: sudo make $1-service"
}

# -- install -------------------------------------------------------------------------
ensure_python() {
    [ -x "$PYTHON" ] || PYTHON=$(command -v python3) || die "no python3; install python3 (>= 3.11)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is $("$PYTHON" -V 2>&1); agentd needs Python >= 3.11 (set AGENTD_PYTHON)"
    case $(readlink -f "$PYTHON") in
        /home/*|/root/*) die "$PYTHON is under /home or /root, hidden from the service by ProtectHome=;" \
                             "use a system python (AGENTD_PYTHON=/usr/bin/python3.11)" ;;
    esac
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        command -v apt-get >/dev/null 2>&1 || die "$PYTHON has no venv module; install it (python3-venv)"
        say "installing python3-venv"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
            || { apt-get update -qq >/dev/null \
                 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; } \
            || die "could not install python3-venv"
    fi
}

ensure_user() {
    install -d -m 0755 /etc/sysusers.d
    install -m 0644 "$REPO/deploy/agentd.sysusers" "$SYSUSERS"
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers "$SYSUSERS"
    else
        getent group agentd >/dev/null || groupadd --system agentd
        getent passwd agentd >/dev/null || useradd --system --gid agentd --home-dir "$STATE_DIR" \
            --no-create-home --shell /usr/sbin/nologin --comment "agentd AI agent daemon" agentd
    fi
    getent passwd agentd >/dev/null || die "user agentd was not created"
}

install_app() {
    # A venv whose python has gone (a distribution upgrade) is rebuilt from scratch.
    if [ -d "$VENV" ] && ! "$VENV/bin/python" -c '' 2>/dev/null; then
        say "rebuilding the broken venv $VENV"
        rm -rf "$VENV"
    fi
    if [ ! -d "$VENV" ]; then
        install -d -m 0755 "$PREFIX"
        "$PYTHON" -m venv "$VENV"
    fi
    # Build from a copy: the checkout may be read-only, and in-tree builds leave files.
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    tar -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./var --exclude=./build \
        --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.pytest_cache \
        -cf - . | tar -C "$work" -xf -
    # pip always reinstalls a project given as a folder, so a re-install with the same
    # version number still replaces the code; --upgrade brings the dependencies along.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-warn-script-location --upgrade "$work"
    rm -rf "$work"
    trap - EXIT
    if [ -d "$REPO/examples" ]; then
        rm -rf "$PREFIX/examples"
        cp -R "$REPO/examples" "$PREFIX/examples"
    fi
    "$VENV/bin/agentd" --help >/dev/null || die "$VENV/bin/agentd does not run"
}

install_config() {
    install -d -m 0755 -o root -g root "$CONF_DIR"
    if [ -e "$ENV_FILE" ]; then
        say "keeping $ENV_FILE"
    else
        tmp=$(mktemp "$CONF_DIR/.agentd.env.XXXXXX")
        sed "s|^AGENTD_HOME=.*|AGENTD_HOME=$STATE_DIR|" "$REPO/.env.example" > "$tmp"
        grep -q "^AGENTD_HOME=$STATE_DIR\$" "$tmp" || echo "AGENTD_HOME=$STATE_DIR" >> "$tmp"
        chmod 0600 "$tmp"
        mv "$tmp" "$ENV_FILE"
        say "wrote $ENV_FILE (edit it: LLM_PROVIDER, LLM_API_KEY, ...)"
    fi
    # It holds secrets: root only. The unit copies it as root for agentd to read (ExecStartPre=+,
    # ExecReload=+), so a reload sees what changed.
    chown root:root "$ENV_FILE"
    chmod 0600 "$ENV_FILE"
}

install_state_and_unit() {
    install -d -m 0755 /etc/tmpfiles.d
    install -m 0644 "$REPO/deploy/agentd.tmpfiles" "$TMPFILES"
    systemd-tmpfiles --create "$TMPFILES"
    install -m 0644 "$REPO/deploy/agentd.service" "$UNIT"
}

do_install() {
    need_root install
    [ -f "$REPO/pyproject.toml" ] || die "$REPO is not an agentd checkout"
    ensure_python
    ensure_user
    install_app
    install_config
    install_state_and_unit
    say "installed $("$VENV/bin/agentd" --version 2>/dev/null || echo agentd) into $VENV"
    if systemd_running; then
        systemctl daemon-reload
        if systemctl is-active --quiet agentd; then
            say "agentd is running: restarting it on the new code (it drains first)"
            systemctl try-restart agentd
        fi
    else
        say "systemd is not running here: skipped systemctl daemon-reload"
    fi
    port=$(sed -n 's/^HEALTH_PORT=\([0-9]*\).*/\1/p' "$ENV_FILE" | tail -n 1)
    cat <<EOF

Next:
  sudo systemctl enable --now agentd
  curl http://127.0.0.1:${port:-8080}/health
  sudo usermod -aG agentd \$USER      # then log in again: members may drop files into
                                      # $STATE_DIR/incoming/ and read the results
  journalctl -u agentd -f
Configuration: $ENV_FILE (then: sudo systemctl restart agentd)
EOF
}

# -- uninstall -----------------------------------------------------------------------
do_uninstall() {
    need_root uninstall
    if systemd_running && systemctl cat agentd.service >/dev/null 2>&1; then
        systemctl disable --now agentd.service || say "could not stop agentd cleanly"
    fi
    rm -f "$UNIT" "$TMPFILES" "$SYSUSERS"
    rm -rf "$VENV" "$PREFIX/examples"
    [ -d "$PREFIX" ] && rmdir "$PREFIX" 2>/dev/null || true
    if systemd_running; then
        systemctl daemon-reload
        systemctl reset-failed agentd.service 2>/dev/null || true
    fi
    say "removed the unit, $VENV and the tmpfiles.d/sysusers.d entries"
    say "kept: $STATE_DIR (the data), $CONF_DIR (the configuration) and the agentd user"
    [ -d /etc/systemd/system/agentd.service.d ] \
        && say "kept: /etc/systemd/system/agentd.service.d (your drop-ins)"
    return 0
}

case ${1:-} in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) echo "usage: $0 install|uninstall" >&2; exit 2 ;;
esac
