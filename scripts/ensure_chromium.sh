#!/usr/bin/env bash
# Make sure headless Chromium is available for the browser tests (tests/browser): installs Debian's `chromium`
# package with apt-get when /usr/bin/chromium is missing. Idempotent and quiet; does nothing when it is there.
# (Playwright's own browser download needs the internet; the tests use this system Chromium instead.)
#   bash scripts/ensure_chromium.sh
set -euo pipefail

CHROMIUM="${MPLMM_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: $CHROMIUM is missing and there is no apt-get; install Chromium yourself and set" \
         "MPLMM_CHROMIUM=/path/to/chromium" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ensure_chromium: installing chromium needs root (no sudo found)" >&2
        exit 1
    fi
fi

echo "ensure_chromium: installing chromium (+ fonts) with apt-get..." >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation fonts-dejavu-core; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "ensure_chromium: apt-get install chromium failed" >&2
    exit 1
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "ensure_chromium: the chromium package installed no /usr/bin/chromium" >&2
    exit 1
fi
echo "ensure_chromium: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) installed" >&2
