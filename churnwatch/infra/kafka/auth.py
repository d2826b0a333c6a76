"""Kafka client security from the settings, one source for every client: Faust's
``broker_credentials`` for the worker, and :func:`client_options` for every plain aiokafka
client (topic creation and checks, ``replay``'s producer, the broker-reset guard, lag and
topic-size readers, the demo).

Supported: PLAINTEXT (default, the embedded broker), SSL (optionally mutual TLS), and
SASL_PLAINTEXT / SASL_SSL with PLAIN or SCRAM-SHA-256/512. The password lives in a
``SecretStr`` and is handed only to the client library.
"""

from __future__ import annotations

from typing import Any

from churnwatch.infra.config import Settings


def ssl_context(settings: Settings) -> Any:
    """A verifying TLS context (system CAs unless ``kafka_ssl_cafile``), or None for
    plaintext protocols."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    def path(p: Any) -> str | None:
        return str(p) if p else None

    return create_ssl_context(cafile=path(settings.kafka_ssl_cafile),
                              certfile=path(settings.kafka_ssl_certfile),
                              keyfile=path(settings.kafka_ssl_keyfile))


def broker_credentials(settings: Settings) -> Any:
    """Faust ``broker_credentials`` (None = plaintext)."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(username=settings.kafka_username,
                                 password=settings.kafka_password.get_secret_value(),
                                 ssl_context=ssl_context(settings),
                                 mechanism=settings.kafka_sasl_mechanism)


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients (``AIOKafkaProducer``, ``AIOKafkaConsumer``,
    ``AIOKafkaAdminClient``), exactly as Faust derives them for the worker's own clients:
    ``security_protocol`` and, as the protocol needs, ``ssl_context``, ``sasl_mechanism``,
    ``sasl_plain_username`` and ``sasl_plain_password``."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    return credentials_to_aiokafka_auth(broker_credentials(settings))
