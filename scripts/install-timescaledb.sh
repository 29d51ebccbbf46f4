#!/usr/bin/env bash
# Install PostgreSQL + the TimescaleDB extension on this machine, if they are missing.
#
# Debian 13: postgresql-17 + postgresql-17-timescaledb from apt (Apache-2 edition).
# Debian 12: no package exists, so build the Apache-2 edition from Debian's own
#            `timescaledb` source package (trixie) against postgresql-15.
# Anything else: say what to install and exit non-zero.
# Idempotent: with the extension already installed it does nothing.
set -euo pipefail

log() { printf '[install-timescaledb] %s\n' "$*" >&2; }

have_extension() {
    local pgc=$1
    [ -x "$pgc" ] || return 1
    local share
    share=$("$pgc" --sharedir)
    ls "$share"/extension/timescaledb.control >/dev/null 2>&1
}

pg_config_for() { echo "/usr/lib/postgresql/$1/bin/pg_config"; }

if [ -n "${AUDITWATCH_DATABASE_URL:-}" ] && [ -n "${AUDITWATCH_TEST_DATABASE_URL:-}" ]; then
    log "external TimescaleDB configured (AUDITWATCH_DATABASE_URL, AUDITWATCH_TEST_DATABASE_URL): nothing to install"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

for v in 17 16 15; do
    if have_extension "$(pg_config_for "$v")"; then
        exit 0
    fi
done

. /etc/os-release
major=${VERSION_ID%%.*}
export DEBIAN_FRONTEND=noninteractive

if [ "${ID:-}" = debian ] && [ "$major" -ge 13 ]; then
    log "Debian $major: installing postgresql-17 and postgresql-17-timescaledb from apt"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq postgresql-17 postgresql-17-timescaledb >/dev/null
    exit 0
fi

if [ "${ID:-}" != debian ] || [ "$major" != 12 ]; then
    log "unsupported OS (${PRETTY_NAME:-unknown}): install PostgreSQL >= 15 with the timescaledb"
    log "extension yourself, or point AUDITWATCH_DATABASE_URL at an existing TimescaleDB server"
    exit 1
fi

log "Debian 12: building the Apache-2 edition of TimescaleDB from Debian's source package"
src_list=/etc/apt/sources.list.d/auditwatch-trixie-src.sources
if [ ! -f "$src_list" ]; then
    $SUDO tee "$src_list" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql-15 postgresql-server-dev-15 dpkg-dev cmake gcc make \
    libssl-dev libkrb5-dev >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get source -qq --download-only timescaledb >/dev/null 2>&1 || apt-get source -qq --download-only timescaledb
dpkg-source -x --no-check ./timescaledb_*.dsc src >/dev/null
cd src
log "configuring $(basename "$PWD") ($(ls ../timescaledb_*.dsc))"
./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
    -DLINTER=OFF -DPG_CONFIG="$(pg_config_for 15)" -DCMAKE_BUILD_TYPE=Release >/dev/null
cd build
log "compiling"
make -s -j"$(nproc)" >/dev/null
$SUDO make -s install >/dev/null
log "installed TimescaleDB (Apache-2 edition) for PostgreSQL 15"
