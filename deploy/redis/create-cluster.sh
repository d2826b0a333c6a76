#!/bin/sh
# Joins the Redis nodes named in REDIS_NODES into a cluster of masters (no replicas), once.
# CLUSTER MEET needs IP addresses, so the host names are resolved first; clients still see
# host names (cluster-preferred-endpoint-type hostname). REDISCLI_AUTH carries the password.
set -eu
PORT=${REDIS_PORT:-6379}
first=${REDIS_NODES%% *}
if redis-cli -h "$first" -p "$PORT" cluster info | grep -q '^cluster_state:ok'; then
  echo "cluster already created"
  exit 0
fi
addresses=""
for node in $REDIS_NODES; do
  ip=$(getent hosts "$node" | awk '{print $1; exit}')
  [ -n "$ip" ] || { echo "cannot resolve $node" >&2; exit 1; }
  addresses="$addresses $ip:$PORT"
done
# shellcheck disable=SC2086  # one argument per node
redis-cli --cluster create $addresses --cluster-replicas 0 --cluster-yes
until redis-cli -h "$first" -p "$PORT" cluster info | grep -q '^cluster_state:ok'; do
  sleep 1
done
redis-cli -h "$first" -p "$PORT" cluster nodes
