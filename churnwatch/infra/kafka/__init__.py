"""Kafka clients: security settings, topics, producers, committed offsets, the broker guard."""
