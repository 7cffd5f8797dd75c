"""Scenario 10, forecast accuracy: how far the period projections of the insights are from
the month that then happened, on days 5, 10 and 20, per device kind, for both variants.
No peer publishes this.

Method: ``devices/history.py`` generates, per device kind, 200 steady customers (its usage
pattern: a printer's flat week, a door's quiet weekend, a shoe's runs, a car's commute, a
pitch's weekend bookings, each with its own day-to-day noise) and 200 printers of
weekday-only offices, over the 150 days before 1 December 2026 -- the simulator's truth.
For October and November, on day d (d complete days of the month elapsed) the customer's
quantity so far is the sum of its days, and the projections are the insights' own
formulas (``insights/formulas.py``): ``projection_linear`` and ``projection_weekday``
(with the 8 weeks before the month as its history). The store is left out on purpose:
its daily sums equal the generated days exactly (``tests/insights`` checks the figures
from the store, the reconciliations check the pipeline), so this isolates the forecast.

MAPE = mean(|projection - month's total| / month's total) x 100 over customers and both
months. Target: <= 10% by day 10 for steady kinds. Baseline of the same run: the naive
forecast "this month = last month", which needs no day of the month.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from bench.common import Measure, table
from devices import history
from insights import formulas

END = datetime(2026, 12, 1, tzinfo=UTC)
MONTHS = (
    (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),
    (datetime(2026, 11, 1, tzinfo=UTC), END),
)
DAYS = (5, 10, 20)
TARGET = 10.0


def _daily(h: history.History, c: history.Customer) -> dict[date, Decimal]:
    """The customer's total per day (all its devices)."""
    out: dict[date, Decimal] = {}
    for n in range(int((h.end - h.start) / timedelta(days=1))):
        day = (h.start + timedelta(days=n)).date()
        out[day] = Decimal(sum(c.daily[d][n] for d in c.devices))
    return out


def _errors(h: history.History, customers: list[history.Customer]) -> dict[str, list[float]]:
    """Absolute percentage errors by ``"<variant> day <d>"`` and ``"naive"``."""
    errors: dict[str, list[float]] = {}
    for c in customers:
        daily = _daily(h, c)
        for start, end in MONTHS:
            first, last = start.date(), end.date()
            month = [first + timedelta(days=i) for i in range((last - first).days)]
            truth = sum((daily[d] for d in month), Decimal(0))
            if truth == 0:
                continue
            before = [first - timedelta(days=i) for i in range(1, 8 * 7 + 1)]
            past = {d: daily[d] for d in before if d in daily}
            prev_start = (start - timedelta(days=1)).replace(day=1).date()
            previous = sum((v for d, v in daily.items() if prev_start <= d < first), Decimal(0))
            errors.setdefault("naive", []).append(float(abs(previous - truth) / truth * 100))
            for n in DAYS:
                now = start + timedelta(days=n)
                so_far = sum((daily[d] for d in month[:n]), Decimal(0))
                shares = [(d, Decimal(1) if i < n else Decimal(0)) for i, d in enumerate(month)]
                linear = formulas.projection_linear(so_far, start, end, now).value
                weekday = formulas.projection_weekday(so_far, shares, past).value
                for name, value in (("linear", linear), ("weekday", weekday)):
                    assert isinstance(value, Decimal)
                    err = float(abs(value - truth) / truth * 100)
                    errors.setdefault(f"{name} day {n}", []).append(err)
    return errors


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


async def measure(quick: bool = False) -> list[Measure]:
    """Scenario 10's rows: per kind and variant, MAPE on day 10 (days 5 and 20 in the note)."""
    n = 50 if quick else 200
    cases = [(kind, False) for kind in history.PATTERNS] + [("printer", True)]
    rows = []
    for kind, weekday_only in cases:
        h = history.generate(
            f"fc-{kind}",
            END,
            customers=n * (2 if weekday_only else 1),
            expansion=0,
            decline=0,
            days=150,
            device_kind=kind,
            seasonal=weekday_only,
        )
        chosen = [c for c in h.customers if (c.kind == "seasonal") == weekday_only]
        errors = _errors(h, chosen)
        label = f"{kind} (weekday-only offices)" if weekday_only else kind
        naive = _mean(errors["naive"])
        for variant in ("linear", "weekday"):
            by_day = {d: _mean(errors[f"{variant} day {d}"]) for d in DAYS}
            rows.append(
                Measure(
                    "10. forecast accuracy",
                    f"MAPE day 10, {label}, {variant}",
                    by_day[10],
                    "%",
                    "naive: last month's total",
                    naive,
                    target=f"<= {TARGET:g}%",
                    met=by_day[10] <= TARGET,
                    note=f"day 5 {by_day[5]:.1f}%, day 20 {by_day[20]:.1f}%; {len(chosen)} "
                    f"customers x 2 months ({history.PATTERNS[kind].meter})",
                )
            )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 customers per kind")
    args = parser.parse_args()
    print(table(asyncio.run(measure(args.quick))))
