#!/bin/sh
# Patroni's bootstrap.post_bootstrap (patroni.yml): run once, on the node that initialised
# the cluster, with a superuser connection URL as $1 (PGPASSFILE set by Patroni). Creates
# mpp-server's roles and database (roles.sql, beside this script; `python -m mpp_server
# migrate`, connected as mpp_owner, then creates its tables) and pgBackRest's stanza, so
# WAL is archived from the first minute (BACKREST_CONFIG: this node's pgbackrest.conf).
set -eu
psql "$1" -v ON_ERROR_STOP=1 -v database="${MPP_DATABASE:-mpp}" \
     -v owner_password="${MPP_OWNER_PASSWORD:-}" -v server_password="${MPP_SERVER_PASSWORD:-}" \
     -f "$(dirname "$0")/roles.sql"
if [ -n "${BACKREST_CONFIG:-}" ]; then
  pgbackrest --config="$BACKREST_CONFIG" --stanza="${SCOPE:-mpp}" stanza-create
fi
