"""Alert sinks: one contract (:class:`AlertSink`) for every place alerts go.

The worker's publisher (``streams/publisher.py``) hands each batch's alerts to every enabled
sink in turn — the ``churn.alerts`` topic, a JSONL file, the retention page's feed, the teams'
work queues, a webhook — and marks the alerts delivered only once all of them returned."""

from alerting.sinks.base import AlertSink, SinkReport, actions_of

__all__ = ["AlertSink", "SinkReport", "actions_of"]
