"""The retention team's page end to end in headless Chromium (Debian's, driven by Playwright):
a real broker, a real redis-server and a real `churnwatch worker` serving the page.

Signs in with the token, feeds events that trip alerts and sees them in the live feed within
seconds, filters it, opens a subscriber (whose id looks like an XSS attack: it must show as
text), checks the risk timeline, indicators and alert history, marks an outcome and sees the
worker's outcome metric move. Screenshots are checked for the key elements and for content.
Set WEB_SCREENSHOT=docs/web.png to keep the feed's screenshot (README).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest

from churnwatch.infra.config import EVENTS_TOPIC
from churnwatch.infra.kafka.produce import EventProducer
from tests.support.feeds import DAY
from tests.support.worker import Worker

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOW = 1_778_414_400_000  # 2026-05-10T12:00:00Z
XSS = "<img/src=x/onerror=alert(1)>"
HIGH_B = "+447700900101"
MEDIUM = "+447700900102"


def _wave(n: int) -> list[dict]:
    """Three waves of events, each its own batch.
    XSS and HIGH_B: logins collapse, then two complaints (2 of 3 indicators: high).
    MEDIUM: a downgrade, then two complaints (complaints with downgrade: medium)."""
    events: list[dict] = []

    def add(sub: str, type_: str, ts: int, **fields: object) -> None:
        events.append({"event_id": f"{sub}-{n}-{len(events)}", "subscriber_id": sub,
                       "type": type_, "ts": ts, **fields})

    for sub in (XSS, HIGH_B):
        if n == 0:
            for k in range(20):
                add(sub, "login", NOW - 8 * DAY - k * DAY // 2, channel="app")
        elif n == 1:
            add(sub, "login", NOW - 2 * DAY, channel="app")
        else:
            add(sub, "complaint", NOW - 3_600_000, category="network")
            add(sub, "complaint", NOW - 3_000_000, category="billing")
    if n == 0:
        add(MEDIUM, "plan_change", NOW - 20 * DAY, plan="max", monthly_fee=40.0)
    elif n == 1:
        add(MEDIUM, "plan_change", NOW - 5 * DAY, plan="lite", monthly_fee=15.0)
    else:
        add(MEDIUM, "complaint", NOW - 3_600_000, category="service")
        add(MEDIUM, "complaint", NOW - 3_000_000, category="billing")
    return sorted(events, key=lambda e: e["ts"])


def _off_loop(fn, *args):  # type: ignore[no-untyped-def]
    """Run ``fn`` in another thread: Playwright's sync API owns this thread's event loop, and
    the producer and ``wait_caught_up`` use asyncio.run."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def _send(worker: Worker, events: list[dict]) -> None:
    async def main() -> None:
        async with EventProducer(worker.broker.bootstrap, EVENTS_TOPIC, worker.partitions) as p:
            await p.send_events(events)
    _off_loop(asyncio.run, main())


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except OSError:
        return 0, {}


def _png_check(browser, png: bytes) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(width, height, distinct colours among sampled pixels) of a PNG, decoded by the
    browser on a blank page."""
    page = browser.new_page()
    try:
        return tuple(page.evaluate("""async (b64) => {
            const img = new Image();
            img.src = "data:image/png;base64," + b64;
            await img.decode();
            const c = document.createElement("canvas");
            c.width = img.width; c.height = img.height;
            const ctx = c.getContext("2d");
            ctx.drawImage(img, 0, 0);
            const data = ctx.getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let i = 0; i < data.length; i += 4 * 97) seen.add(data[i] << 16 | data[i + 1] << 8 | data[i + 2]);
            return [img.width, img.height, seen.size];
        }""", base64.b64encode(png).decode()))
    finally:
        page.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium "
                    "(apt-get install chromium chromium-driver)")
def test_retention_page_end_to_end(worker: Worker, tmp_path: Path) -> None:
    if os.environ.get("CI") == "true":
        assert CHROMIUM.exists(), "CI must install chromium (see .ci/run)"
    from playwright.sync_api import expect, sync_playwright

    worker.start()
    base = f"http://127.0.0.1:{worker.web_port}"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            worker.wait_for(lambda: _get(f"{base}/readyz")[0] == 200, timeout=90,
                            what="/readyz to report ready")
            assert _get(f"{base}/healthz") == (200, {"status": "ok"})
            assert worker.metric("churnwatch_action_outcomes_total", result="accepted") == 0
            page = browser.new_page(viewport={"width": 1360, "height": 760})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            page.goto(f"{base}/")
            expect(page).to_have_url(f"{base}/login")
            page.fill("#token", "not-the-token-at-all")
            page.click("#sign-in")
            expect(page.locator("#failed")).to_be_visible()
            page.fill("#token", worker.web_token)
            page.click("#sign-in")
            expect(page.get_by_test_id("feed-view")).to_be_visible()
            expect(page.get_by_test_id("status")).to_contain_text("live", timeout=10_000)

            for n in range(3):  # three batches
                _send(worker, _wave(n))
                _off_loop(worker.wait_caught_up)
            alerts = {a["subscriber_id"]: a for a in worker.alerts()}
            assert {XSS, HIGH_B, MEDIUM} <= set(alerts)
            assert alerts[XSS]["severity"] == "high" and alerts[MEDIUM]["severity"] == "medium"
            rows = page.locator("#alerts tr.alert-row")
            expect(rows).to_have_count(len(worker.alerts()), timeout=10_000)  # polled every 2 s
            xss_row = page.locator(f'#alerts tr[data-alert-id="{alerts[XSS]["alert_id"]}"]')
            expect(xss_row.locator("a.subscriber")).to_have_text(XSS)
            expect(xss_row.locator(".sev")).to_have_text("high")
            expect(xss_row).to_contain_text("login_drop")
            expect(xss_row).to_contain_text("complaints")
            owner = alerts[XSS]["actions"][0]["team"]
            expect(xss_row.locator(".owner")).to_contain_text(owner)
            newest = [a["alert_id"] for a in worker.alerts()][::-1]  # JSONL: delivery order
            assert [r.get_attribute("data-alert-id") for r in rows.all()] == newest
            assert page.locator("#alerts img").count() == 0 and not dialogs

            feed_png = page.screenshot(path=str(tmp_path / "feed.png"), full_page=True)
            width, height, colours = _png_check(browser, feed_png)
            assert width == 1360 and height >= 300 and colours >= 8, (width, height, colours)
            if os.environ.get("WEB_SCREENSHOT"):
                shutil.copy(tmp_path / "feed.png", os.environ["WEB_SCREENSHOT"])

            page.select_option("#filter-severity", "medium")
            expect(rows).to_have_count(sum(a["severity"] == "medium" for a in worker.alerts()))
            expect(page.locator(f'#alerts tr[data-alert-id="{alerts[MEDIUM]["alert_id"]}"]'))\
                .to_be_visible()
            page.select_option("#filter-severity", "")
            page.select_option("#filter-team", owner)
            expect(xss_row).to_be_visible()
            expect(rows).to_have_count(sum(any(x["team"] == owner for x in a["actions"])
                                           for a in worker.alerts()))
            page.select_option("#filter-team", "")

            xss_row.locator("a.subscriber").click()
            view = page.get_by_test_id("subscriber-view")
            expect(view).to_be_visible()
            expect(page.get_by_test_id("feed-view")).to_be_hidden()
            expect(page.get_by_test_id("sub-id")).to_have_text(XSS)
            chart = page.get_by_test_id("risk-chart")
            days = {e["ts"] // DAY for n in range(3) for e in _wave(n) if e["subscriber_id"] == XSS}
            expect(chart.locator("circle")).to_have_count(len(days))  # one point a day
            expect(chart.locator("polyline")).to_have_count(1)
            expect(page.locator('#indicators li[data-indicator="login_drop"]')).to_have_class("on")
            expect(page.locator('#indicators li[data-indicator="complaints"]')).to_have_class("on")
            expect(page.locator('#indicators li[data-indicator="spend_decline"]')).to_have_class("off")
            history = page.locator(f'#history tr[data-alert-id="{alerts[XSS]["alert_id"]}"]')
            expect(history).to_be_visible()
            expect(history).to_contain_text("seed_high_risk")
            assert page.locator("img").count() == 0 and not dialogs

            sub_png = page.screenshot(path=str(tmp_path / "subscriber.png"), full_page=True)
            width, height, colours = _png_check(browser, sub_png)
            assert width == 1360 and colours >= 8, (width, height, colours)

            history.locator('button[data-result="accepted"]').click()
            expect(history.get_by_test_id("outcome-done")).to_have_text("marked accepted")
            worker.wait_for(lambda: worker.metric("churnwatch_action_outcomes_total",
                                                  result="accepted") == 1,
                            timeout=30, what="the outcome to reach the worker's metrics")
            assert worker.metric("churnwatch_action_outcomes_total", result="declined") == 0
        finally:
            browser.close()
    log = worker.log_path.read_text()
    assert XSS not in log and HIGH_B not in log and worker.web_token not in log
