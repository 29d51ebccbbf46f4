#!/usr/bin/env bash
# Install Prometheus Alertmanager (Debian's prometheus-alertmanager) if missing: the alerting tests push
# alerts to a real one and compare our Alertmanager-format webhook payload with its own.
# Auditwatch does not need it at run time (alertmanager_urls is optional). Idempotent: present, it does nothing.
# The package enables a system service; the tests start their own instance on a free loopback port instead.
set -euo pipefail

log() { printf '[install-alertmanager] %s\n' "$*" >&2; }

if command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "please install Alertmanager so that /usr/bin/prometheus-alertmanager exists" \
        "(https://github.com/prometheus/alertmanager/releases)"
    exit 1
fi
log "installing prometheus-alertmanager from apt"
$SUDO apt-get update -qq -o DPkg::Lock::Timeout=300
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 \
    --no-install-recommends prometheus-alertmanager
