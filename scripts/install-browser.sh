#!/usr/bin/env bash
# Install Debian's chromium for the dashboard's end-to-end tests (Playwright drives it headless).
# Idempotent: with /usr/bin/chromium present it does nothing. Playwright's own browser download is
# never used: the tests launch executable_path=/usr/bin/chromium.
set -euo pipefail

log() { printf '[install-browser] %s\n' "$*" >&2; }

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "no apt-get here: install Chromium so that /usr/bin/chromium exists, then rerun"
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
log "installing chromium from apt (for the dashboard's browser tests)"
$SUDO apt-get update -qq -o DPkg::Lock::Timeout=300
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 chromium fonts-dejavu-core
[ -x /usr/bin/chromium ] || { log "chromium installed but /usr/bin/chromium is missing"; exit 1; }
log "chromium $(/usr/bin/chromium --version 2>/dev/null | head -1)"
