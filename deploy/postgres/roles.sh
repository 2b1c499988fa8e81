#!/bin/sh
# The compose `postgres` service's first start (/docker-entrypoint-initdb.d): mpp-server's
# roles, and the database (POSTGRES_DB) given to mpp_owner (docs/operations.md, "Roles").
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v database="$POSTGRES_DB" -v owner_password="$MPP_OWNER_PASSWORD" \
     -v server_password="$MPP_SERVER_PASSWORD" -f /etc/mpp/roles.sql
