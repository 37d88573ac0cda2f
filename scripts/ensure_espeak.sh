#!/usr/bin/env bash
# Make sure espeak-ng is available for the extraction tests (tests/test_extract.py build real clips with synthesised
# speech): installs Debian's `espeak-ng` package with apt-get when it is missing. Idempotent and quiet. FFmpeg needs
# nothing here: PyAV's wheels carry its libraries.
#   bash scripts/ensure_espeak.sh
set -euo pipefail

if command -v espeak-ng >/dev/null 2>&1 || command -v espeak >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_espeak: espeak-ng is missing and there is no apt-get; install espeak-ng yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "ensure_espeak: installing espeak-ng needs root (no sudo found)" >&2
        exit 1
    fi
fi
echo "ensure_espeak: installing espeak-ng with apt-get..." >&2
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get install -y -qq --no-install-recommends espeak-ng || { $SUDO apt-get update -qq && \
        $SUDO apt-get install -y -qq --no-install-recommends espeak-ng; }; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "ensure_espeak: apt-get install espeak-ng failed" >&2
    exit 1
fi
echo "ensure_espeak: $(espeak-ng --version 2>/dev/null | head -n 1) installed" >&2
