#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries for the PostgreSQL store tests (pytest -m postgres), only if they
# are missing. Idempotent. The tests start a throwaway cluster of their own (initdb in a temporary directory,
# as the `postgres` user when run as root), so this script creates no cluster and starts no server.
# Needs root or sudo for apt-get.
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_postgres: /usr/lib/postgresql/*/bin/initdb is missing and apt-get is not available;" \
       "install the PostgreSQL server by hand (initdb and pg_ctl on PATH will do)" >&2
  exit 1
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install_postgres: need root (or sudo) to apt-get install postgresql" >&2
    exit 1
  fi
fi
echo "install_postgres: installing Debian's postgresql (server binaries for the store tests)"
export DEBIAN_FRONTEND=noninteractive
# postgresql-common would create and start a default cluster ("main") on port 5432: the tests do not use it.
$SUDO mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/chainstream.conf >/dev/null
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
compgen -G "/usr/lib/postgresql/*/bin/initdb"
