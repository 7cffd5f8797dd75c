"""Scenario 11, the console: how long the customer page of a customer with 200 devices and
a year of history takes to be interactive in a real browser.

Method:

1. **History**: a fresh embedded chDB directory gets one customer of ``devices/history.py``
   with 200 printers reporting daily for the 365 days before today's UTC midnight (73,000
   readings, rolled up as a bulk load), and its insights computed (``desk.refresh``).
2. ``python -m telemeter api`` serves it, its closer on (it closes the year's statements
   first: the page lists them), the other workers off. The page is opened in Debian's
   Chromium (Playwright, ``devices/browser.py``), signed in with the admin token (every
   section: health, bill, usage with the period before, projection, 200 devices, quotes,
   statements, alerts, orders), 10 times (quick: 3), each a full page load.
3. **Interactive** = every section has its data drawn (``data-ready``); the page measures it
   itself (``performance.now()`` from the start of the navigation: HTML, scripts, the
   sign-in check, every API read, every chart). Target < 1,000 ms (the slowest load).
   Baseline: the same API reads, made by one HTTP client all at once (what the page waits
   for at least), in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.api_latency import DATABASE, TOKEN, ApiProcess
from bench.common import Measure, table
from devices import history
from devices.browser import chromium, ready_ms, sign_in, watched_page
from insights import desk
from telemeter.components import open_store
from telemeter.config import Settings, StoreSettings

TARGET_MS = 1000.0
SCENARIO = "11. console"


def _reads(customer_id: str, start: datetime, end: datetime, now: datetime) -> list[str]:
    """The API reads of the customer page (``console/src/pages/customer.tsx``)."""
    base = f"/v1/customers/{customer_id}"
    prev = (start - timedelta(days=1)).replace(day=1)
    day = "meter=pages_printed&window=day"
    month = "meter=pages_printed&window=month"

    def span(a: datetime, b: datetime) -> str:
        return (
            f"from={a.isoformat().replace('+00:00', 'Z')}&to={b.isoformat().replace('+00:00', 'Z')}"
        )

    return [
        "/v1/me",
        f"{base}/invoice-preview",
        f"{base}/insights",
        base,
        f"{base}/usage?{day}&{span(start, end)}",
        f"{base}/usage?{day}&{span(prev, start)}",
        f"{base}/usage?{month}&{span(start, end)}&group_by=device_id",
        f"{base}/quotes?limit=1000",
        f"{base}/statements?limit=24",
        f"/v1/alerts?subject={customer_id}",
        f"/v1/orders?customer_id={customer_id}&limit=50",
    ]


async def _all_at_once(url: str, targets: list[str]) -> float:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        t0 = time.perf_counter()
        answers = await asyncio.gather(*(http.get(t) for t in targets))
        ms = (time.perf_counter() - t0) * 1000
    bad = [
        (t, a.status_code) for t, a in zip(targets, answers, strict=True) if a.status_code != 200
    ]
    if bad:
        raise RuntimeError(f"the page's reads failed: {bad}")
    return ms


async def _statements(url: str, customer_id: str, at_least: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + 300
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        while time.monotonic() < deadline:
            r = await http.get(f"/v1/customers/{customer_id}/statements", params={"limit": 24})
            if r.status_code == 200 and r.json()["count"] >= at_least:
                return
            await asyncio.sleep(1)
    raise TimeoutError(f"the closer did not close {at_least} statements in 300 s")


async def measure(quick: bool = False) -> list[Measure]:
    """Scenario 11's rows."""
    loads = 3 if quick else 10
    now = datetime.now(UTC)
    end = now.replace(hour=0, minute=0, second=0, microsecond=0)
    workdir = Path(tempfile.mkdtemp(prefix="bench-console-"))
    dsn = f"chdb://{workdir / 'chdb'}"
    made = history.generate("console", end, 1, 0, 0, days=365, devices=(200, 200), volume=100)
    customer = made.customers[0].customer_id
    try:
        settings = Settings(_env_file=None, store=StoreSettings(dsn=dsn, database=DATABASE))
        async with open_store(settings) as store:
            readings = await history.write(store, made, now)
            await desk.refresh(store, datetime.now(UTC))
        extra = {
            "TELEMETER_BILLING__CLOSE_WORKER": "true",
            "TELEMETER_BILLING__INSIGHTS_WORKER": "false",
            "TELEMETER_BILLING__ALERTS_WORKER": "false",
            "TELEMETER_DOWNLINK__DISPATCHER": "false",
        }
        async with ApiProcess(dsn, workdir / "api.log", cache=False, extra=extra) as api:
            await _statements(api.url, customer, 11)
            start = end.replace(day=1)
            period_end = (start + timedelta(days=32)).replace(day=1)
            targets = _reads(customer, start, period_end, now)
            await _all_at_once(api.url, targets)  # warm-up
            floor = [await _all_at_once(api.url, targets) for _ in range(loads)]
            async with chromium() as browser:
                page, watch = await watched_page(browser, api.url)
                await sign_in(page, api.url, TOKEN)
                await ready_ms(page, api.url, f"/customers/{customer}")  # warm-up
                times = [
                    await ready_ms(page, api.url, f"/customers/{customer}") for _ in range(loads)
                ]
                rows = await page.locator("[data-testid='device-breakdown'] tbody tr").count()
            if watch.problems:
                raise RuntimeError(f"the page had problems: {watch.problems}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    slowest = max(times)
    return [
        Measure(
            SCENARIO,
            "customer page interactive, 200 devices x 365 days (slowest load)",
            slowest,
            "ms",
            "its API reads, all at once (median)",
            statistics.median(floor),
            target=f"< {TARGET_MS:,.0f} ms",
            met=slowest < TARGET_MS,
            note=(
                f"{loads} full loads in Chromium: median {statistics.median(times):,.0f} ms, "
                f"fastest {min(times):,.0f} ms; {rows} device rows drawn; {readings:,} readings; "
                f"{len(targets)} API reads"
            ),
        )
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 page loads instead of 10")
    args = parser.parse_args()
    print(table(asyncio.run(measure(args.quick))))
    sys.exit(0)
