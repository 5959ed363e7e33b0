#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries for the PostgreSQL store tests (pytest -m postgres), only if they
# are missing. Idempotent. The tests start a throwaway cluster of their own (initdb in a temporary directory,
# as the `postgres` user when run as root), so this script creates no cluster and starts no server.
# Needs root or sudo for apt-get.
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
source "$(dirname "$0")/lib/apt.sh"
apt_ready install_postgres "Debian's PostgreSQL server (initdb and pg_ctl)"
echo "install_postgres: installing Debian's postgresql (server binaries for the store tests)"
# postgresql-common would create and start a default cluster ("main") on port 5432: the tests do not use it.
$SUDO mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.d/chainstream.conf >/dev/null
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
compgen -G "/usr/lib/postgresql/*/bin/initdb"
