"""The HTTP ingest is bounded per feed (streams/ingest_body.py, streams/ingest_auth.InFlight):
slow bodies from one feed leave another feed served, compressed bodies are inflated only
after the token and only up to the body limit, and 32 concurrent bombs stay under the
documented memory bound (docs/limits.md). Real aiohttp servers on loopback, raw sockets."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import zlib
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
from aiohttp.test_utils import TestServer

from benchmarks.ingest_abuse import TOKENS, bomb, bombs32
from churnwatch.infra.config import Settings
from streams.ingest import create_ingest_app
from streams.ingest_auth import TokenStore
from streams.ingest_http import runner_options
from tests.support.ingest_bounds import Instant, _events

GOOD, SLOW = "good-token-0001", "slow-token-0002"
BODY_LIMIT = 16 << 20




def _tokens(tmp: Path) -> Path:
    path = tmp / "tokens.toml"
    path.write_text("[tokens]\n" + "".join(f'"{t}" = "{f}"\n' for t, f in TOKENS.items()))
    return path


@asynccontextmanager
async def _server(tmp: Path, **kw: object):
    path = _tokens(tmp)
    producer = Instant()
    settings = Settings(ingest_tokens_file=path, ingest_rate_per_feed=0, **kw)
    server = TestServer(create_ingest_app(settings, producer, TokenStore(path)))
    await server.start_server(**runner_options())  # TestServer(**kw) would drop them
    try:
        yield server.port, producer
    finally:
        await server.close()




async def _post(port: int, body: bytes, token: str | None = GOOD,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """POST /v1/events on a raw socket; (status, response body) or (-1, b"") if dropped."""
    head = ["POST /v1/events HTTP/1.1", "Host: x", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if token:
        head.append(f"Authorization: Bearer {token}")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())

    async def send() -> None:
        for i in range(0, len(body), 1 << 16):
            writer.write(body[i:i + (1 << 16)])
            await writer.drain()

    sending = asyncio.ensure_future(send())
    try:
        head_part = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        length = next((int(line.split(b":")[1]) for line in head_part.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        payload = await asyncio.wait_for(reader.readexactly(length), 30)
    except (ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return -1, b""
    finally:
        sending.cancel()
        writer.close()
    return int(head_part.split()[1]), payload


async def _slow_connection(port: int, stop: asyncio.Event) -> int:
    """Feed `slow` announces 4 KiB and sends 1 byte every 2 s; returns the status it got."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(("POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Authorization: Bearer {SLOW}\r\nContent-Length: 4096\r\n\r\n").encode())
    line = asyncio.ensure_future(reader.readline())
    while not stop.is_set() and not line.done():
        writer.write(b" ")
        await writer.drain()
        await asyncio.wait([line], timeout=2.0)
    writer.close()
    return int((line.result() or b"0 -1").split()[1]) if line.done() else -1


def test_slow_bodies_of_one_feed_leave_another_feed_served(tmp_path: Path) -> None:
    async def main() -> tuple[list[tuple[int, float]], list[int]]:
        async with _server(tmp_path, ingest_body_grace_s=2) as (port, producer):
            stop = asyncio.Event()
            slow = [asyncio.ensure_future(_slow_connection(port, stop)) for _ in range(32)]
            await asyncio.sleep(0.5)  # every slow connection is in
            good = []
            deadline = time.monotonic() + 6
            n = 0
            while time.monotonic() < deadline:
                started = time.perf_counter()
                status, _ = await _post(port, _events(10, f"g{n}-"))
                good.append((status, time.perf_counter() - started))
                n += 1
                await asyncio.sleep(0.2)
            stop.set()
            return good, await asyncio.gather(*slow)

    good, slow = asyncio.run(main())
    assert len(good) >= 20 and {s for s, _ in good} == {200}
    assert max(t for _, t in good) < 1.0
    # 8 (the per-feed cap) were admitted and cut for their rate, the other 24 refused at once
    assert sorted(slow) == [408] * 8 + [503] * 24


def test_per_feed_in_flight_cap_is_below_the_global_one(tmp_path: Path) -> None:
    async def main() -> tuple[list[int], int]:
        async with _server(tmp_path, ingest_max_in_flight=4, ingest_max_in_flight_per_feed=2,
                           ingest_body_grace_s=30, ingest_body_min_bytes_per_s=0) as (port, _):
            stop = asyncio.Event()
            slow = [asyncio.ensure_future(_slow_connection(port, stop)) for _ in range(3)]
            await asyncio.sleep(0.5)
            status, _ = await _post(port, _events(1, "x"))
            stop.set()
            return sorted(await asyncio.gather(*slow)), status

    slow, good = asyncio.run(main())
    assert slow[-1] == 503 and good == 200


def test_compressed_bodies_only_after_the_token_and_capped_at_the_body_limit(
        tmp_path: Path) -> None:
    gib = bomb(1024)  # 1 MiB of raw deflate, 1 GiB inflated
    events = _events(3, "c")

    async def main() -> dict[str, tuple]:
        out: dict[str, tuple] = {}
        async with _server(tmp_path) as (port, producer):
            for name, token, body, headers in (
                    ("anonymous_bomb", None, gib, {"Content-Encoding": "deflate"}),
                    ("anonymous_br", None, b"x", {"Content-Encoding": "br"}),
                    ("bomb", GOOD, gib, {"Content-Encoding": "deflate"}),
                    ("br", GOOD, events, {"Content-Encoding": "br"}),
                    ("gzip", GOOD, _gzip(events), {"Content-Encoding": "gzip"}),
                    ("zlib", GOOD, zlib.compress(events), {"Content-Encoding": "deflate"}),
                    ("raw", GOOD, _raw(events), {"Content-Encoding": "deflate"}),
                    ("broken", GOOD, _gzip(events)[:-9], {"Content-Encoding": "gzip"})):
                cpu, started = time.process_time(), time.perf_counter()
                status, payload = await _post(port, body, token, headers)
                out[name] = (status, time.perf_counter() - started, time.process_time() - cpu,
                             payload)
            out["produced"] = (len(producer.messages),)
        return out

    out = asyncio.run(main())
    assert out["anonymous_bomb"][0] == 401 and out["anonymous_br"][0] == 401
    status, seconds, cpu, payload = out["bomb"]
    assert status == 413 and b"decompressed" in payload
    assert seconds < 1.0 and cpu < 0.5  # inflating all of it costs seconds
    assert out["br"][0] == 415
    for name in ("gzip", "zlib", "raw"):
        assert out[name][0] == 200 and orjson.loads(out[name][3])["accepted"] == 3
    assert out["broken"][0] == 400
    assert out["produced"] == (3,)


def _gzip(data: bytes) -> bytes:
    import gzip
    return gzip.compress(data)


def _raw(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def test_32_concurrent_bombs_stay_under_the_documented_memory_bound(tmp_path: Path) -> None:
    """docs/limits.md: refused bombs hold at most ingest_max_in_flight x ingest_max_body_bytes
    of inflated body (32 x 16 MiB) above the process's baseline. The ingest runs in its own
    process, measured from /proc (peak RSS, VmHWM)."""
    port_file = tmp_path / "port"
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.ingest_abuse", "--serve",
                              str(port_file), str(_tokens(tmp_path))],
                             cwd=Path(__file__).parent.parent)
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        result = asyncio.run(bombs32(int(port_file.read_text()), child.pid))
    finally:
        child.kill()
        child.wait()
    assert result["statuses"] == {413: 32}
    bound_mb = 32 * BODY_LIMIT / 2**20
    assert result["peak_rss_mb"] - result["rss_before_mb"] < bound_mb, result
    assert result["server_cpu_s"] < 5, result
