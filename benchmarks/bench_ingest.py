"""HTTP ingest load benchmark: sustained events/s and request latency of ``churnwatch ingest``.

    python -m benchmarks.bench_ingest [--seconds 10] [--batches 1,100,1000] [--quick]

Starts the embedded broker (Tansu, memory only) and ``churnwatch ingest`` as a subprocess,
then runs the load generator in a SECOND process (this module with ``--generate``: an httpx
async client on loopback, ``--concurrency`` connections, pre-built NDJSON bodies of valid
login/spend/usage events over 100,000 subscribers). Each scenario (batch size) runs for
``--seconds`` after a short warm-up; every 200 response means the broker acknowledged the
events (acks=all). Reported: events/s and requests/s accepted, client-side p50/p99/max
request latency, non-200 answers, and the server's own accepted counter as a cross-check.
The rate limit is off for the run. Target: >= 50,000 events/s in batches of 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import orjson

from benchmarks import report

TARGET_EVENTS_PER_S = 50_000
TOKEN = "bench-token"
T0 = 1_778_400_000_000


def _bodies(batch: int, count: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for b in range(count):
        lines = []
        for i in range(batch):
            sub = f"+4477{rnd.randrange(100_000):08d}"
            kind = rnd.random()
            ev: dict[str, Any] = {"event_id": f"b{seed}-{b}-{i}", "subscriber_id": sub,
                                  "ts": T0 + rnd.randrange(86_400_000)}
            if kind < 0.6:
                ev.update(type="login", channel="app")
            elif kind < 0.8:
                ev.update(type="usage", data_mb=round(rnd.random() * 500, 2), voice_min=3.0)
            else:
                ev.update(type="spend", amount=round(rnd.random() * 50, 2), kind="recharge")
            lines.append(orjson.dumps(ev))
        out.append(b"\n".join(lines) + b"\n")
    return out


async def _generate(url: str, batch: int, concurrency: int, seconds: float,
                    warmup: float) -> dict[str, Any]:
    import httpx

    bodies = _bodies(batch, 64 if batch <= 100 else 16, seed=batch)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + seconds

        async def loop(k: int) -> None:
            nonlocal accepted
            n = k
            while True:
                t = time.perf_counter()
                if t >= stop_at:
                    return
                r = await client.post("/v1/events", content=bodies[n % len(bodies)],
                                      headers=headers)
                n += concurrency
                done = time.perf_counter()
                if t >= measure_from:
                    latencies.append(done - t)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        accepted += orjson.loads(r.content)["accepted"]
                elif r.status_code == 429 or r.status_code == 503:
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(loop(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - measure_from
    latencies.sort()

    def pct(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 \
            if latencies else None

    return {"batch": batch, "concurrency": concurrency, "seconds": round(elapsed, 2),
            "requests": len(latencies), "statuses": {str(k): v for k, v in statuses.items()},
            "accepted_events": accepted,
            "events_per_s": accepted / elapsed, "requests_per_s": len(latencies) / elapsed,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0)}


def _server_accepted(url: str) -> float:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == "churnwatch_ingest_events_accepted_total":
                total += sample.value
    return total


def run(seconds: float, batches: list[int], concurrency: dict[int, int], partitions: int,
        warmup: float) -> dict[str, Any]:
    import httpx

    from churnwatch.dev.embedded import EmbeddedBroker, free_port

    results = []
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.toml"
        tokens.write_text(f'[tokens]\n"{TOKEN}" = "bench"\n')
        port = free_port()
        env = dict(os.environ, CHURNWATCH_BROKER=broker.url, CHURNWATCH_PARTITIONS=str(partitions),
                   CHURNWATCH_INGEST_TOKENS_FILE=str(tokens), CHURNWATCH_INGEST_PORT=str(port),
                   CHURNWATCH_INGEST_RATE_PER_FEED="0", CHURNWATCH_LOG_LEVEL="warning")
        log = open(Path(tmp) / "ingest.log", "wb")
        server = subprocess.Popen([sys.executable, "-m", "churnwatch", "ingest"], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{url}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError((Path(tmp) / "ingest.log").read_text())
                    time.sleep(0.1)
            for batch in batches:
                before = _server_accepted(url)
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.bench_ingest", "--generate", url,
                     "--batch", str(batch), "--concurrency", str(concurrency[batch]),
                     "--seconds", str(seconds), "--warmup", str(warmup)],
                    capture_output=True, timeout=seconds + warmup + 120)
                if out.returncode:
                    raise RuntimeError(f"generator failed: {out.stderr.decode()[-2000:]}")
                result = orjson.loads(out.stdout)
                result["server_accepted_events_incl_warmup"] = _server_accepted(url) - before
                results.append(result)
        finally:
            server.terminate()
            server.wait(30)
            log.close()
    return {"benchmark": "ingest", "when": report.utc_now(),
            "machine": report.machine_info(with_redis=False), "partitions": partitions,
            "target_events_per_s_batch_1000": TARGET_EVENTS_PER_S, "scenarios": results}


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per scenario")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    p.add_argument("--batches", default="1,100,1000", help="events per request, comma list")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="3 s per scenario")
    p.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)  # generator process
    p.add_argument("--batch", type=int, default=1000, help=argparse.SUPPRESS)
    p.add_argument("--concurrency", type=int, default=0,
                   help="generator connections (default 8 for 10..999 events, else 4)")
    p.add_argument("--out", default=None, help="report directory (default reports/)")
    args = p.parse_args(argv)
    if args.generate:
        result = asyncio.run(_generate(args.generate, args.batch, args.concurrency or 4,
                                       args.seconds, args.warmup))
        sys.stdout.write(orjson.dumps(result).decode())
        return None
    seconds = 3.0 if args.quick else args.seconds
    batches = [int(b) for b in args.batches.split(",")]
    conc = {b: args.concurrency or (8 if 10 <= b < 1000 else 4) for b in batches}
    data = run(seconds, batches, conc, args.partitions, args.warmup)
    rows = []
    for r in data["scenarios"]:
        rows.append((r["batch"], r["concurrency"], report.si(r["events_per_s"], digits=4),
                     f"{r['requests_per_s']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                     f"{r['max_ms']:.1f}", r["statuses"]))
    report.print_table("HTTP ingest on loopback (generator in a second process, acks=all)",
                       ["events/request", "connections", "events/s", "requests/s", "p50 ms",
                        "p99 ms", "max ms", "statuses"], rows,
                       caption=f"target >= {TARGET_EVENTS_PER_S:,} events/s at 1,000/request")
    path = report.write_report("bench_ingest", data, args.out)
    report.note(f"report: {path}")
    return data


if __name__ == "__main__":
    main()
