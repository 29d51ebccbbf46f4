#!/usr/bin/env bash
# Install rsyslog if missing: the forwarder's tests send RFC 5424 over TCP to a real rsyslogd
# (started by the tests themselves on a loopback port, as the test user; the system service is not used).
# Idempotent: with rsyslogd present it does nothing.
set -euo pipefail

log() { printf '[install-rsyslog] %s\n' "$*" >&2; }

if command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "please install rsyslog (https://www.rsyslog.com/) with your package manager"
    exit 1
fi
log "installing rsyslog from apt"
$SUDO apt-get update -qq -o DPkg::Lock::Timeout=300
$SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends rsyslog
