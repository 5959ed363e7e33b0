#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/e2e), only if it is missing. Idempotent; never
# downloads a browser build of its own (no `playwright install`): Playwright drives /usr/bin/chromium.
# Needs root or sudo for apt-get. Set CHAINSTREAM_SKIP_BROWSER=1 to skip.
set -euo pipefail

if [[ "${CHAINSTREAM_SKIP_BROWSER:-}" == "1" ]]; then
  echo "install_browser: skipped (CHAINSTREAM_SKIP_BROWSER=1)"
  exit 0
fi
if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: /usr/bin/chromium is missing and apt-get is not available; install Chromium by hand" >&2
  exit 1
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_browser: need root (or sudo) to apt-get install chromium" >&2
    exit 1
  fi
fi
echo "install_browser: installing Debian's chromium (and an emoji font for screenshots)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-noto-color-emoji fonts-liberation >/dev/null
/usr/bin/chromium --version
