"""Hostile feeds against `churnwatch ingest` (issue #26): slow bodies and decompression bombs.

Runs the ingest app in a child process (a producer that acknowledges at once: no broker, so
only the HTTP front door is measured) and reports, from the child's /proc:

- ``slowloris``: 32 connections of feed ``slow`` sending a body 1 byte every 2 s while feed
  ``good`` posts a 10-event batch every 0.25 s: good's success rate and latency;
- ``anon_bomb``: a 1 MiB deflate body inflating to 1 GiB, without a token: answer time and
  the server's CPU seconds, and /healthz's latency meanwhile;
- ``auth_bomb``: the same with a valid token;
- ``bombs32``: 32 concurrent authenticated 4 MiB bombs (4 GiB each) from 4 feeds: the
  server's peak RSS (VmHWM) and CPU seconds.

Usage: ``python -m benchmarks.ingest_abuse [--seconds 15] [--json]``. It imports ``streams``
from ``sys.path``, so ``PYTHONPATH=<other checkout>`` measures another version.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import orjson

TOKENS = {"good-token-0001": "good", "slow-token-0002": "slow", **{
    f"bomb-token-000{i}": f"bomb{i}" for i in range(4)}}
DAY_MS = 86_400_000


def bomb(inflated_mib: int) -> bytes:
    """Raw deflate of ``inflated_mib`` MiB of zeros (~1 KiB per MiB), built in O(1 MiB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * inflated_mib + c.flush()


def _proc(pid: int) -> tuple[float, int]:
    """(CPU seconds, peak RSS bytes) of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(int(line.split()[1]) * 1024 for line in
               Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmHWM"))
    return cpu, hwm


def _events(n: int, start: int) -> bytes:
    ts = int(time.time() * 1000) - DAY_MS
    return orjson.dumps([{"event_id": f"g{start + i}", "subscriber_id": "+447700900001",
                          "type": "login", "ts": ts + i} for i in range(n)])


async def _request(port: int, token: str | None, body: bytes, headers: dict[str, str],
                   timeout: float = 120.0) -> tuple[int, float]:
    """POST /v1/events over a raw socket; (status or -1 on a dropped connection, seconds)."""
    started = time.perf_counter()
    head = ["POST /v1/events HTTP/1.1", "Host: x", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    if token:
        head.append(f"Authorization: Bearer {token}")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())

        async def send() -> None:
            for i in range(0, len(body), 1 << 16):
                writer.write(body[i:i + (1 << 16)])
                await writer.drain()

        sending = asyncio.ensure_future(send())
        line = await asyncio.wait_for(reader.readline(), timeout)
        sending.cancel()
        writer.close()
        status = int(line.split()[1]) if line else -1
    except (OSError, asyncio.TimeoutError, IndexError, ValueError):
        status = -1
    return status, time.perf_counter() - started


async def _slow(port: int, stop: asyncio.Event) -> int:
    """One slow-body connection of feed ``slow``; the status it got (-1: none)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer slow-token-0002\r\nContent-Length: 4096\r\n\r\n")
        read = asyncio.ensure_future(reader.readline())
        while not stop.is_set() and not read.done():
            writer.write(b" ")
            await writer.drain()
            await asyncio.wait([read], timeout=2.0)
        status = int((await read).split()[1]) if read.done() and read.result() else -1
        writer.close()
        return status
    except (OSError, IndexError, ValueError):
        return -1


async def slowloris(port: int, seconds: float) -> dict:
    stop = asyncio.Event()
    slow = [asyncio.ensure_future(_slow(port, stop)) for _ in range(32)]
    await asyncio.sleep(1.0)
    results = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        results.append(await _request(port, "good-token-0001", _events(10, n), {}, 10.0))
        n += 10
        await asyncio.sleep(0.25)
    stop.set()
    slow_status = await asyncio.gather(*slow)
    ok = [t for s, t in results if s == 200]
    return {"good_requests": len(results), "good_ok_share": round(len(ok) / len(results), 3),
            "good_statuses": sorted({s for s, _ in results}),
            "good_p50_ms": round(1000 * statistics.median(ok), 1) if ok else None,
            "good_max_ms": round(1000 * max(ok), 1) if ok else None,
            "slow_statuses": {s: slow_status.count(s) for s in sorted(set(slow_status))}}


async def one_bomb(port: int, pid: int, token: str | None) -> dict:
    body = bomb(1024)
    cpu0, _ = _proc(pid)
    health: list[float] = []

    async def probe() -> None:
        while True:
            t = time.perf_counter()
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                await r.read()
                w.close()
            except OSError:
                continue
            health.append(time.perf_counter() - t)
            await asyncio.sleep(0.05)

    prober = asyncio.ensure_future(probe())
    await asyncio.sleep(0.1)
    status, seconds = await _request(port, token, body, {"Content-Encoding": "deflate"})
    prober.cancel()
    cpu1, _ = _proc(pid)
    return {"body_bytes": len(body), "status": status, "answer_s": round(seconds, 3),
            "server_cpu_s": round(cpu1 - cpu0, 3),
            "healthz_max_ms": round(1000 * max(health), 1) if health else None}


async def bombs32(port: int, pid: int) -> dict:
    body = bomb(4096)
    cpu0, rss0 = _proc(pid)
    started = time.perf_counter()
    out = await asyncio.gather(*[_request(port, f"bomb-token-000{i % 4}", body,
                                          {"Content-Encoding": "deflate"}) for i in range(32)])
    cpu1, rss1 = _proc(pid)
    statuses = [s for s, _ in out]
    return {"body_bytes": len(body), "statuses": {s: statuses.count(s) for s in set(statuses)},
            "wall_s": round(time.perf_counter() - started, 2),
            "server_cpu_s": round(cpu1 - cpu0, 2), "rss_before_mb": round(rss0 / 2**20, 1),
            "peak_rss_mb": round(rss1 / 2**20, 1)}


def serve(port_file: Path, tokens: Path) -> None:
    """The child: the ingest app with an instant producer on a free port."""
    from aiohttp import web

    from churnwatch.infra.config import Settings
    from streams.ingest import create_ingest_app
    from streams.ingest_auth import TokenStore

    try:
        from streams.ingest_http import runner_options
        options = runner_options()
    except ImportError:  # before issue #26
        options = {}

    class Instant:
        partitions = 12

        async def produce(self, messages) -> None:  # type: ignore[no-untyped-def]
            return None

    async def main() -> None:
        settings = Settings(ingest_tokens_file=tokens, ingest_rate_per_feed=0)
        runner = web.AppRunner(create_ingest_app(settings, Instant(), TokenStore(tokens)),
                               access_log=None, **options)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_file.write_text(str(runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(main())


async def measure(seconds: float) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.toml"
        tokens.write_text("[tokens]\n" + "".join(f'"{t}" = "{f}"\n' for t, f in TOKENS.items()))
        for name in ("slowloris", "anon_bomb", "auth_bomb", "bombs32"):
            port_file = Path(tmp) / f"{name}.port"
            child = subprocess.Popen([sys.executable, "-m", "benchmarks.ingest_abuse", "--serve",
                                      str(port_file), str(tokens)])
            try:
                while not port_file.exists() or not port_file.read_text():
                    await asyncio.sleep(0.05)
                port = int(port_file.read_text())
                if name == "slowloris":
                    out[name] = await slowloris(port, seconds)
                elif name == "bombs32":
                    out[name] = await bombs32(port, child.pid)
                else:
                    out[name] = await one_bomb(port, child.pid,
                                               "good-token-0001" if name == "auth_bomb" else None)
            finally:
                child.kill()
                child.wait()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", nargs=2, metavar=("PORT_FILE", "TOKENS"))
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]))
        return
    result = asyncio.run(measure(args.seconds))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


if __name__ == "__main__":
    main()
