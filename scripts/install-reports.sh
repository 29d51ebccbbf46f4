#!/usr/bin/env bash
# Install what the reports need outside Python: pango (WeasyPrint renders the PDFs with it) and poppler-utils
# (pdftotext/pdftoppm: the report tests read the PDFs back and render their pages).
# Idempotent: with both present it does nothing.
set -euo pipefail

log() { printf '[install-reports] %s\n' "$*" >&2; }

missing=()
if ! ldconfig -p 2>/dev/null | grep -q 'libpango-1.0.so'; then missing+=(libpango-1.0-0 libpangoft2-1.0-0); fi
command -v pdftotext >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "please install: ${missing[*]} (pango for WeasyPrint, poppler-utils for pdftotext/pdftoppm)"
    exit 1
fi
log "installing ${missing[*]} from apt"
$SUDO apt-get update -qq -o DPkg::Lock::Timeout=300
$SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${missing[@]}"
