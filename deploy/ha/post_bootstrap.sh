#!/bin/sh
# Patroni's bootstrap.post_bootstrap (patroni.yml): run once, on the node that initialised
# the cluster, with a superuser connection URL as $1 (PGPASSFILE set by Patroni). Creates
# mpp-server's database; `python -m mpp_server migrate` then creates its tables.
set -eu
psql "$1" -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"${MPP_DATABASE:-mpp}\""
