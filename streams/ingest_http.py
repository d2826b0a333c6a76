"""aiohttp server options of the HTTP ingest (``streams.ingest``).

- ``auto_decompress=False``: a compressed body is inflated by the handler after the token
  check, with a cap (:mod:`streams.ingest_body`), never by the HTTP parser before it.
  After an early answer (401, 413, 429, 503...) aiohttp still reads and discards the rest
  of the body for up to 10 s (its lingering close, so the client can read the answer):
  that costs socket reads, not inflation.
- One log line, without traceback, per malformed HTTP request (:class:`OneLineErrors`):
  anyone can send those, and a traceback each would let them flood the log. The line names
  the client and the error class only, never the parser's message (which may quote a header
  such as ``Authorization``).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

HTTP_LOG = "churnwatch.ingest.http"


class OneLineErrors(logging.Filter):
    """Turns aiohttp's "Error handling request" records for malformed requests into one
    warning line without traceback; other errors (bugs) keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "malformed HTTP request from %s: %s (answered %d)"
            record.args = (remote, type(exc).__name__, exc.code)
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def runner_options() -> dict[str, Any]:
    """Keyword arguments for the ``web.AppRunner`` (or ``TestServer``) of the ingest app."""
    logger = logging.getLogger(HTTP_LOG)
    if not any(isinstance(f, OneLineErrors) for f in logger.filters):
        logger.addFilter(OneLineErrors())
    return {"auto_decompress": False, "logger": logger}
