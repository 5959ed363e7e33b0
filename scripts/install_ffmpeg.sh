#!/usr/bin/env bash
# Install Debian's ffmpeg, which the relay runs to transcode uploaded audio into streaming segments
# (src/chainstream/media/transcode.py), only if it is missing. Idempotent; never downloads a static build.
# Needs root or sudo for apt-get. Set CHAINSTREAM_SKIP_FFMPEG=1 to skip.
set -euo pipefail

if [[ "${CHAINSTREAM_SKIP_FFMPEG:-}" == "1" ]]; then
  echo "install_ffmpeg: skipped (CHAINSTREAM_SKIP_FFMPEG=1)"
  exit 0
fi
if command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1; then
  exit 0
fi
source "$(dirname "$0")/lib/apt.sh"
apt_ready install_ffmpeg "Debian's ffmpeg (ffmpeg, ffprobe)"
echo "install_ffmpeg: installing Debian's ffmpeg"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
ffmpeg -version | head -1
