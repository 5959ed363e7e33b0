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
source "$(dirname "$0")/lib/apt.sh"
apt_ready install_browser "Debian's chromium (/usr/bin/chromium)"
echo "install_browser: installing Debian's chromium (and an emoji font for screenshots)"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-noto-color-emoji fonts-liberation >/dev/null
/usr/bin/chromium --version
