#!/usr/bin/env bash
# Install nats-server (JetStream) and util-linux's `logger` if missing: the bus and syslog tests use them.
# The bus itself is optional at run time (empty AUDITWATCH_BUS_URL: events go straight to the database).
# Idempotent: with both present it does nothing.
set -euo pipefail

log() { printf '[install-nats] %s\n' "$*" >&2; }

missing=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v logger >/dev/null 2>&1 || missing+=(bsdutils)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "please install: ${missing[*]} (nats-server from https://github.com/nats-io/nats-server/releases)"
    exit 1
fi
log "installing ${missing[*]} from apt"
$SUDO apt-get update -qq -o DPkg::Lock::Timeout=300
$SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}"
