#!/bin/sh
# Creates churnwatch's topics once (idempotent: --if-not-exists). churn.events carries the load
# and sets how many workers can share it (one partition is consumed by one worker at a time);
# the other topics get the same count, which is what `churnwatch worker` would create.
set -eu
BOOTSTRAP=${BOOTSTRAP:-kafka:9092}
EVENTS_PARTITIONS=${EVENTS_PARTITIONS:-12}
REPLICATION_FACTOR=${REPLICATION_FACTOR:-1}
TOPICS=/opt/kafka/bin/kafka-topics.sh
for topic in churn.events churn.alerts churn.scores churn.dlq; do
  "$TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$topic" \
    --partitions "$EVENTS_PARTITIONS" --replication-factor "$REPLICATION_FACTOR" \
    --config min.insync.replicas=1
done
# Faust's leader-election topic of the consumer group (app_id, default "churnwatch"): the
# broker does not auto-create topics here and the worker declares none of Faust's own.
"$TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
  --topic "${APP_ID:-churnwatch}-__assignor-__leader" --partitions 1 \
  --replication-factor "$REPLICATION_FACTOR"
"$TOPICS" --bootstrap-server "$BOOTSTRAP" --describe --topic churn.events
