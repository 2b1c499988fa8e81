#!/bin/sh
# The HA image's entrypoint (docker-compose.yml, profile `ha`): render the template of the
# role given as $1 with the container's environment, then run it in the foreground.
set -eu
case "${1:-}" in
  patroni)
    mkdir -p "$(dirname "$DATA_DIR")" "$SOCKET_DIR" "$BACKREST_REPO" \
             "$BACKREST_WORK/log" "$BACKREST_WORK/lock" "$BACKREST_WORK/spool"
    chown -R postgres:postgres "$(dirname "$DATA_DIR")" "$SOCKET_DIR" "$BACKREST_REPO" \
                               "$BACKREST_WORK"
    envsubst < /etc/mpp-ha/patroni.yml > /etc/mpp-ha/node.yml
    envsubst < /etc/mpp-ha/pgbackrest.conf > "$BACKREST_CONFIG"
    chown postgres:postgres /etc/mpp-ha/node.yml "$BACKREST_CONFIG"
    exec runuser -u postgres -- patroni /etc/mpp-ha/node.yml ;;
  haproxy)
    envsubst < /etc/mpp-ha/haproxy.cfg > /etc/mpp-ha/rendered.cfg
    exec haproxy -db -f /etc/mpp-ha/rendered.cfg ;;
  *)
    echo "usage: entrypoint.sh patroni|haproxy" >&2; exit 2 ;;
esac
