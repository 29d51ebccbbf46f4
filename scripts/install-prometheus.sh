#!/usr/bin/env bash
# Install Prometheus and Alertmanager (Debian packages) if missing: the metrics test scrapes a running stack
# with the real `prometheus` and asserts on PromQL results; the alert webhook tests drive the real
# `prometheus-alertmanager`. Neither is needed at run time. The packages' own services are not wanted (the
# tests start their own on loopback), so they are stopped and disabled when systemd started them.
# Idempotent: with both present it does nothing.
set -euo pipefail

log() { printf '[install-prometheus] %s\n' "$*" >&2; }

missing=()
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ] \
    || missing+=(prometheus-alertmanager)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "please install: ${missing[*]} (https://prometheus.io/download/)"
    exit 1
fi
log "installing ${missing[*]} from apt"
$SUDO apt-get update -qq -o DPkg::Lock::Timeout=300
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${missing[@]}"
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for unit in prometheus prometheus-alertmanager; do
        $SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
fi
