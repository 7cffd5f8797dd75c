"""Scenario 9, the inside-sales desk: how well the call list and the lists find the planted
cases, and how fast they and one customer's insights answer.

Method:

1. **History**: a fresh embedded chDB directory gets ``devices/history.py``'s history
   ending at today's UTC midnight: 1,000 customers (quick: 200) of 1-3 printers, 120 days
   of daily page counts, 50 planted expansions (1.6x for the last 30 days) and 50 planted
   declines (0.4x) among steady and weekly-seasonal customers (quick: 10 and 10), rolled up
   as the rollup worker would. Then one refresh computes every customer's row (timed:
   seconds per 1,000 customers).
2. **Precision@20** of three lists against the planted truth: the call list (its top 20
   should be planted cases of either kind), the customers sorted by ``-growth_30d`` (the
   expansions) and those with reason ``DECLINE_30D`` by ``-value`` (the declines). Target
   >= 0.9 each.
3. **Latency**: the store is closed and ``python -m telemeter api`` serves it (its own
   workers off: no refresh, closer, alerts or webhooks meanwhile); 4 closed-loop clients
   (a team at their desks; scenario 4's client) ask for ``GET
   /v1/insights/call-list?limit=20``, then ``GET /v1/customers/{random}/insights`` (the
   refresh's answer, as a desk gets it), then the same with ``fresh=true`` (computed on
   the spot: no target, the cost of a live answer), 15 s each (quick: 4 s) after a
   warm-up. Targets p99 <= 200 ms and <= 100 ms. Baseline: ``/healthz`` under the same
   load, the HTTP floor of this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.api_latency import DATABASE, ApiProcess, load
from bench.common import Measure, table
from devices import history
from insights import desk
from telemeter.components import open_store
from telemeter.config import Settings, StoreSettings

CLIENTS = 4
TARGETS_MS = {"call list": 200.0, "one customer's insights": 100.0}


def precision(ranked: list[str], truth: set[str], k: int = 20) -> float:
    """Share of the first ``k`` that are in ``truth`` (``k`` at most the truth's size: a
    quick run plants 10)."""
    k = min(k, len(truth))
    top = ranked[:k]
    return sum(1 for c in top if c in truth) / k if top else 0.0


async def measure(quick: bool = False) -> list[Measure]:
    """Scenario 9's rows."""
    n, planted = (200, 10) if quick else (1000, 50)
    seconds, warmup = (4.0, 1.0) if quick else (15.0, 3.0)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    workdir = Path(tempfile.mkdtemp(prefix="bench-desk-"))
    dsn = f"chdb://{workdir / 'chdb'}"
    try:
        made = history.generate("desk", end, customers=n, expansion=planted, decline=planted)
        settings = Settings(_env_file=None, store=StoreSettings(dsn=dsn, database=DATABASE))
        async with open_store(settings) as store:
            t0 = time.monotonic()
            readings = await history.write(store, made, datetime.now(UTC))
            wrote_s = time.monotonic() - t0
            t0 = time.monotonic()
            rows = await desk.refresh(store, datetime.now(UTC))
            refresh_s = time.monotonic() - t0
            found, _ = await store.insight_rows()
        calls = [r["customer_id"] for r in desk.call_list(found, 20)]
        growing = [r["customer_id"] for r in desk.customer_list(found, "-growth_30d")]
        declining = [
            r["customer_id"] for r in desk.customer_list(found, "-value", reason="DECLINE_30D")
        ]
        either = made.planted("expansion") | made.planted("decline")
        scores = {
            "call list (expansion or decline)": precision(calls, either),
            "sorted by -growth_30d (expansion)": precision(growing, made.planted("expansion")),
            "reason DECLINE_30D by -value (decline)": precision(declining, made.planted("decline")),
        }
        extra = {
            "TELEMETER_BILLING__INSIGHTS_WORKER": "false",
            "TELEMETER_BILLING__ALERTS_WORKER": "false",
            "TELEMETER_DOWNLINK__DISPATCHER": "false",
        }
        ids = [c.customer_id for c in made.customers]
        async with ApiProcess(dsn, workdir / "api.log", cache=False, extra=extra) as api:
            floor = await load(api.url, "/healthz", lambda _r: "/healthz", CLIENTS, seconds, warmup)
            listed = await load(
                api.url,
                "call list",
                lambda _r: "/v1/insights/call-list?limit=20",
                CLIENTS,
                seconds,
                warmup,
            )
            one = await load(
                api.url,
                "one customer's insights",
                lambda r: f"/v1/customers/{r.choice(ids)}/insights",
                CLIENTS,
                seconds,
                warmup,
            )
            live = await load(
                api.url,
                "one customer's insights, fresh=true",
                lambda r: f"/v1/customers/{r.choice(ids)}/insights?fresh=true",
                CLIENTS,
                seconds,
                warmup,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    note = (
        f"{n:,} customers ({planted} planted expansions, {planted} declines), {readings:,} "
        f"readings written in {wrote_s:.0f} s; one refresh of every row {refresh_s:.1f} s "
        f"({rows} rows, {refresh_s / rows * 1000:.0f} ms a customer)"
    )
    out = [
        Measure(
            "9. inside-sales desk",
            f"precision@20, {name}",
            value,
            "",
            target=">= 0.9",
            met=value >= 0.9,
            note=note,
        )
        for name, value in scores.items()
    ]
    for run in (listed, one, live):
        p99 = run.quantile(0.99)
        target = TARGETS_MS.get(run.name)
        out.append(
            Measure(
                "9. inside-sales desk",
                f"{run.name} p99, {CLIENTS} clients",
                p99,
                "ms",
                "/healthz p99, same load",
                floor.quantile(0.99),
                target="" if target is None else f"<= {target:,.0f} ms",
                met=None if target is None else p99 <= target and not run.errors,
                note=f"p50 {run.quantile(0.5):,.1f} ms, {run.rate:,.0f} req/s, {run.errors} errors",
            )
        )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 customers, 4 s per endpoint")
    args = parser.parse_args()
    random.seed(0)
    print(table(asyncio.run(measure(args.quick))))
    sys.exit(0)
