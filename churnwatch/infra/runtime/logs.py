"""Logging for every churnwatch command: JSON lines when stderr is not a terminal, readable
lines when it is, and nothing that looks like a phone number or a configured secret.

All output goes through the standard ``logging`` module (Faust, aiokafka and churnwatch's own
loggers alike), rendered by structlog's ``ProcessorFormatter``. Redaction runs on the final
event dict, after the message is formatted and any traceback rendered, so neither a log
argument nor an exception message can leak a subscriber's number.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

PHONE = "[phone]"
SECRET = "[secret]"

# Candidates: an international number (+CC or (+CC) first, anywhere but after a digit), or a
# national one (00CC, a group in parentheses or 2-5 digits first) that is not inside a word, a
# decimal number, a date-time or a dotted/dashed identifier; either followed by up to 7 groups
# joined by at most one separator. A ``\xHH`` escape counts as a boundary, so numbers inside
# the repr of raw Kafka records (debug logs of aiokafka) are found too.
_GROUPS = r"(?:[ .-]?\(?\d{1,5}\)?){1,7}"
_PHONE = re.compile(
    r"(?<![\d+])(?:\+\s?\d{1,3}|\(\+\d{1,3}\))" + _GROUPS + r"(?!\d)"
    r"|(?:(?<![\w.+:/-])|(?<=\\x[0-9a-fA-F]{2}))(?:00\d{1,3}|\(\d{1,5}\)|\d{2,5})" + _GROUPS
    + r"(?![\w])(?!\.\d)(?!:\d)")
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@\s]*):([^@/\s]+)@")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = sum(c.isdigit() for c in text)
    international = text.startswith(("+", "00", "(+"))
    # no upper bound: a longer run (an invalid id, a number with an extension) can hide one
    return PHONE if digits >= (7 if international else 9) else text


class Redactor:
    """Replaces phone-number-like strings and secrets in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Also redact this exact string (ignored if shorter than 4 characters)."""
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)  # longest first: no partial leftovers

    def add_all(self, secrets: Iterable[str]) -> None:
        """:meth:`add` each of ``secrets`` (e.g. ingest tokens learnt after startup)."""
        for secret in secrets:
            self.add(secret)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, SECRET)
        text = _URL_PASSWORD.sub(rf"\1:{SECRET}@", text)
        text = _BEARER.sub(rf"\1 {SECRET}", text)
        text = _WEBHOOK_SECRET.sub(SECRET, text)
        return _PHONE.sub(_phone, text)

    def processor(self, logger: Any, method: str,
                  event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """structlog processor: redacts every string (and long integer) value."""
        for key, value in event_dict.items():
            if isinstance(value, str):
                event_dict[key] = self(value)
            elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**8:
                event_dict[key] = self(str(value))
            elif not isinstance(value, (int, float, bool, type(None))):
                event_dict[key] = self(repr(value))
        return event_dict


_HANDLER = "churnwatch"


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(level: str = "info", secrets: Iterable[str] = (),
                      stream: TextIO | None = None, json: bool | None = None) -> Redactor:
    """Route all logging to ``stream`` (default: the current stderr) as JSON lines, or readable
    lines when it is a terminal (``json`` forces either), redacting phone numbers and
    ``secrets``. Replaces the handler of an earlier call and keeps other handlers (none in
    the CLI). Returns the redactor, so secrets learnt later can be added."""
    if json is None:
        target = stream or sys.stderr
        json = not (hasattr(target, "isatty") and target.isatty())
    redactor = Redactor(secrets)
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redactor.processor, renderer])
    handler = logging.StreamHandler(stream) if stream else _CurrentStderr()
    handler.setFormatter(formatter)
    handler.set_name(_HANDLER)
    handler.redactor = redactor  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER] + [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    return redactor


def current_redactor() -> Redactor | None:
    """The redactor of the handler :func:`configure_logging` installed, if any."""
    for handler in logging.getLogger().handlers:
        if handler.get_name() == _HANDLER:
            return getattr(handler, "redactor", None)
    return None

