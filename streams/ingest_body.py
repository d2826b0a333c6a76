"""Reading one request body of the HTTP ingest within time, rate and size bounds.

Called only after the bearer token was checked and the request was admitted, so nothing
here runs for an unauthenticated client:

- **time and rate**: the whole body within ``timeout_s``, and after a grace period at least
  ``min_rate`` bytes/s on average; each read waits only until the moment the body would
  break either bound (a client trickling 1 byte every 2 s is cut after the grace period,
  one that sends nothing too). The in-flight slot it held is then free again.
- **size**: at most ``limit`` bytes on the wire, and at most ``limit`` bytes once inflated.
- **Content-Encoding** ``gzip`` or ``deflate`` (zlib or raw) is inflated as it arrives, with
  :meth:`zlib.Decompress.decompress`'s ``max_length``: a bomb stops one byte past the limit,
  the rest is never inflated. aiohttp's own decompression must be off
  (``auto_decompress=False``, :func:`streams.ingest_http.runner_options`): it would inflate
  before the handler, token or not.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable

from aiohttp import StreamReader

from churnwatch.core.errors import ChurnwatchError

ENCODINGS = ("identity", "gzip", "x-gzip", "deflate")


class BodyError(ChurnwatchError):
    """A request body that cannot be read within the bounds: ``status`` and ``error`` code
    for the response, ``reason`` for the client."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason


class Inflater:
    """Streaming gzip/deflate decoding that refuses to produce more than ``limit`` bytes."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self.size = 0
        self._d: zlib._Decompress | None = (
            zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip") else None)

    def feed(self, data: bytes) -> bytes:
        if self._d is None:  # deflate: zlib-wrapped as the RFC says, raw as some clients send
            zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and \
                ((data[0] << 8) | data[1]) % 31 == 0
            self._d = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        pieces = []
        try:
            while data:
                piece = self._d.decompress(data, self.limit - self.size + 1)
                self.size += len(piece)
                if self.size > self.limit:
                    raise BodyError(413, "body_too_large", f"body larger than {self.limit} "
                                    "bytes once decompressed")
                pieces.append(piece)
                data = self._d.unconsumed_tail
        except zlib.error:
            raise BodyError(400, "bad_encoding", f"the body is not valid {self.encoding} "
                            "data") from None
        return b"".join(pieces)

    def finish(self) -> None:
        if self._d is None or not self._d.eof or self._d.unused_data:
            raise BodyError(400, "bad_encoding", f"the {self.encoding} body is truncated or "
                            "has trailing data")


def content_encoding(header: str | None) -> str:
    """The one supported coding of a ``Content-Encoding`` header, or :class:`BodyError`."""
    coding = (header or "identity").strip().lower()
    if coding not in ENCODINGS:
        raise BodyError(415, "unsupported_encoding", "Content-Encoding must be gzip, deflate "
                        "or identity (one coding)")
    return coding


async def read_body(content: StreamReader, encoding: str, limit: int, timeout_s: float,
                    min_rate: float, grace_s: float,
                    clock: Callable[[], float] = time.monotonic) -> bytes:
    """The request body, inflated if ``encoding`` says so, within the bounds above."""
    inflater = None if encoding == "identity" else Inflater(encoding, limit)
    started = clock()
    deadline = started + timeout_s
    pieces: list[bytes] = []
    wire = 0
    while True:
        due = started + max(grace_s, wire / min_rate) if min_rate > 0 else deadline
        wait = min(deadline, due) - clock()
        try:
            if wait <= 0:
                raise TimeoutError
            chunk = await asyncio.wait_for(content.readany(), wait)
        except TimeoutError:
            if clock() >= deadline:
                raise BodyError(408, "body_timeout", f"the body took longer than {timeout_s:g} "
                                "s") from None
            raise BodyError(408, "body_too_slow", f"the body arrived slower than {min_rate:g} "
                            "bytes/s") from None
        if not chunk:
            break
        wire += len(chunk)
        if wire > limit:
            raise BodyError(413, "body_too_large", f"body larger than {limit} bytes")
        pieces.append(inflater.feed(chunk) if inflater is not None else chunk)
    if inflater is not None:
        inflater.finish()
    return b"".join(pieces)
