"""``churnwatch send``: post an NDJSON event file to the HTTP ingest in batches.

429 and 503 answers (and connection errors) are retried, waiting what ``Retry-After`` says;
resending a batch is harmless because events are deduplicated by ``event_id`` downstream.
Any other error status (401, 413, 415, ...) stops the run with the server's reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from churnwatch.core.errors import ChurnwatchError

MAX_LISTED_REJECTIONS = 1000


class SendError(ChurnwatchError):
    """The ingest refused a batch for a reason a retry cannot fix, or retries ran out."""


class _Retryable(Exception):
    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


@dataclass
class SendReport:
    events: int = 0
    batches: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    rejections: list[dict] = field(default_factory=list)  # {"line": n, "reason": "..."}
    elapsed_s: float = 0.0

    def as_dict(self) -> dict:
        return {"events": self.events, "batches": self.batches, "accepted": self.accepted,
                "rejected": self.rejected, "retries": self.retries,
                "rejections": self.rejections, "elapsed_s": round(self.elapsed_s, 3)}


def events_url(url: str) -> str:
    """``http://host:port`` → ``http://host:port/v1/events``; a full path is kept."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SendError(f"--url {url!r} must look like http://HOST:PORT[/v1/events]")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/v1/events")
    return urlunsplit(parts)


def batches(lines: Iterable[bytes], size: int) -> Iterator[tuple[list[int], bytes]]:
    """Non-empty lines → (their 1-based line numbers, NDJSON body) of ``size`` lines each."""
    numbers: list[int] = []
    chunk: list[bytes] = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        numbers.append(n)
        chunk.append(line)
        if len(chunk) >= size:
            yield numbers, b"\n".join(chunk) + b"\n"
            numbers, chunk = [], []
    if chunk:
        yield numbers, b"\n".join(chunk) + b"\n"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _wait(retry_state: RetryCallState) -> float:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    if isinstance(exc, _Retryable) and exc.retry_after is not None:
        return min(exc.retry_after, 60.0)
    return wait_exponential_jitter(initial=0.2, max=10)(retry_state)


async def send_stream(lines: Iterable[bytes], url: str, token: str, batch: int = 1000,
                      concurrency: int = 1, max_attempts: int = 10, timeout_s: float = 60.0,
                      progress: Callable[[int], None] | None = None) -> SendReport:
    """Post ``lines`` in NDJSON batches; returns the totals. Raises :class:`SendError`."""
    target = events_url(url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    report = SendReport()
    started = time.perf_counter()
    source = batches(lines, batch)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def post(client: httpx.AsyncClient, numbers: list[int], body: bytes) -> None:
        async for attempt in AsyncRetrying(
                retry=retry_if_exception_type((_Retryable, httpx.TransportError)),
                stop=stop_after_attempt(max_attempts), wait=_wait, reraise=True):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    report.retries += 1
                response = await client.post(target, content=body, headers=headers)
                if response.status_code in (429, 503):
                    raise _Retryable(response.status_code, _retry_after(response))
        if response.status_code != 200:
            try:
                problem = orjson.loads(response.content)
                reason = problem.get("detail") or problem.get("reason", "")
            except (orjson.JSONDecodeError, AttributeError):
                reason = response.text[:200]
            raise SendError(f"HTTP {response.status_code} from {target}: {reason}")
        result = orjson.loads(response.content)
        report.batches += 1
        report.events += len(numbers)
        report.accepted += result["accepted"]
        report.rejected += len(result["rejected"])
        for item in result["rejected"]:
            if len(report.rejections) < MAX_LISTED_REJECTIONS:
                report.rejections.append({"line": numbers[item["index"]],
                                          "reason": item["reason"]})
        if progress:
            progress(len(numbers))

    async def worker(client: httpx.AsyncClient) -> None:
        for numbers, body in source:  # a shared generator: each batch goes to one worker
            await post(client, numbers, body)

    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        try:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        except _Retryable as exc:
            raise SendError(f"gave up after {max_attempts} attempts: {exc} from {target}") from None
        except httpx.TransportError as exc:
            raise SendError(f"cannot reach {target}: {type(exc).__name__} {exc}") from None
    report.elapsed_s = time.perf_counter() - started
    return report
