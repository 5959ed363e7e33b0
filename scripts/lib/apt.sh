# Sourced by the install scripts: `apt_ready NAME WHAT` checks that apt-get can run and sets SUDO ("" as root,
# "sudo" otherwise), or explains in one line why not (NAME: the calling script; WHAT: what it installs) and exits.
apt_ready() {
  local name=$1 what=$2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$name: $what is missing and apt-get is not available; install it by hand" >&2
    exit 1
  fi
  SUDO=""
  if [[ "$(id -u)" != "0" ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "$name: need root (or sudo) to apt-get install $what" >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
}
