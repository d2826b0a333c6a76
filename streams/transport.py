"""A Faust app whose Kafka consumer waits a configurable time for data.

Faust's aiokafka driver hard-codes ``fetch_max_wait_ms=1500``. Tansu (the embedded broker)
holds a fetch that finds nothing until that wait runs out, so a record produced just after
an empty fetch waits up to 1.5 s before the worker sees it: most of the event-to-alert
latency at moderate load. This module only changes that one number.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # guards the pinned aiokafka internals
            raise RuntimeError("aiokafka no longer has _fetch_max_wait_ms; "
                               "update streams/transport.py for this aiokafka version")
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class ChurnApp(faust.App):
    """``faust.App`` with ``fetch_max_wait_ms`` for its worker consumer."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)
