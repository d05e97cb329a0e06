#!/usr/bin/env bash
# The project's two commands (see README.md):
#   ./qvd.sh up     set up this machine and run an all-in-one QVD node in the foreground
#   ./qvd.sh test   set up what the tests need and run the whole suite (lint, types,
#                   import contracts, tests); extra arguments go to pytest
# Both are idempotent: a second run installs nothing new. Needs root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'qvd.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and runs containers)"
[ -r /etc/debian_version ] || die "this script supports Debian 12 (bookworm)"

# Packages every mode needs: Python venv for the project, PostgreSQL 15 binaries for
# the embedded cluster (initdb/pg_ctl, run as the 'postgres' user), and what the node
# daemon drives: LXC, iproute2 (bridge, routes), nftables (the VM firewall) and
# dnsmasq-base (the VMs' DHCP/DNS on the node bridge; no system service).
BASE_PACKAGES=(python3 python3-venv postgresql-15 postgresql-client-15 util-linux iproute2 nftables lxc dnsmasq-base)

apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    # The embedded cluster is ours: keep Debian from creating and starting its own
    # 'main' cluster on port 5432 when PostgreSQL is installed.
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
}

python_env() {
    local stamp="$VENV/.qvd-installed" want
    want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV (Debian's /usr/bin/python3)"
        /usr/bin/python3 -m venv "$VENV"
    fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing Python dependencies (pinned by constraints.txt)"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>/dev/null
        "$VENV/bin/python" -m pip install -q \
            --disable-pip-version-check -c constraints.txt -e '.[dev]' 2>&1 \
            | grep -v "^WARNING: Location" || true
        "$VENV/bin/python" -c "import qvd" || die "the qvd package did not install"
        echo "$want" > "$stamp"
    fi
}

extra_deps() {
    # Components add their own system dependencies as scripts/deps-*.sh
    local script
    for script in scripts/deps-*.sh; do
        [ -e "$script" ] || continue
        bash "$script"
    done
}

run_checks() {
    local bin="$VENV/bin" dirs=() d
    for d in src tests bench; do [ -d "$d" ] && dirs+=("$d"); done
    say "ruff"
    "$bin/ruff" check "${dirs[@]}"
    "$bin/ruff" format --check "${dirs[@]}"
    say "mypy"
    "$bin/mypy"
    say "import contracts"
    "$bin/lint-imports"
    say "pytest"
    "$bin/pytest" "$@"
}

case "${1:-}" in
    up)
        shift
        apt_install "${BASE_PACKAGES[@]}"
        python_env
        extra_deps
        exec "$VENV/bin/qvd" up "$@"
        ;;
    test)
        shift
        apt_install "${BASE_PACKAGES[@]}"
        python_env
        extra_deps
        run_checks "$@"
        ;;
    *)
        echo "usage: ./qvd.sh up | ./qvd.sh test [pytest args]" >&2
        exit 2
        ;;
esac
