"""Terminal output of the simulator and the demo (rich): progress, usage table, verdict."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from devices.automation_demo import Automation
from devices.console_demo import ConsoleLook
from devices.corrections import Corrections
from devices.desk_demo import Desk
from devices.reconcile import Reconciliation
from devices.sales_demo import Sales
from devices.simulator import SimulationConfig, SimulationResult
from devices.webhook_demo import Delivered, summary
from schemas.telemetry import format_decimal

console = Console(stderr=False, highlight=False)


@contextlib.contextmanager
def progress(config: SimulationConfig) -> Iterator[Callable[[int, int, int], None]]:
    """A live line with messages sent and acknowledged while the simulator runs."""
    total = int(config.rate * config.duration_s)
    bar = Progress(
        TextColumn("[bold]simulating[/]"),
        BarColumn(),
        TextColumn("{task.fields[sent]} sent, {task.fields[acked]} acked"),
        TimeElapsedColumn(),
        console=console,
        disable=not sys.stdout.isatty(),
    )
    task = bar.add_task("sim", total=total, sent=0, acked=0)

    def update(sent: int, acked: int, _qos: int) -> None:
        bar.update(task, completed=min(sent, total), sent=sent, acked=acked)

    with bar:
        yield update


def print_simulation(result: SimulationResult, truth_path: Path) -> None:
    """What the simulator did."""
    in_window = sum(result.truth.readings.values())
    console.print(
        f"simulator: {result.messages_sent} messages published ({result.duplicates_sent} "
        f"duplicate resends, {result.resets} counter resets), {result.messages_acked} acked by "
        f"the broker, {in_window} readings in the window; ground truth in {truth_path}"
    )


def print_usage(report: Reconciliation) -> None:
    """Usage per customer and meter as read from the API, and the reconciliation line."""
    table = Table(title="Usage read from the API (window of the simulation)")
    for column, justify in (
        ("customer", "left"),
        ("meter", "left"),
        ("usage", "right"),
        ("unit", "left"),
        ("readings", "right"),
        ("expected", "right"),
        ("", "center"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for line in report.lines:
        table.add_row(
            line.customer_id,
            line.meter,
            format_decimal(line.actual_quantity),
            line.unit,
            str(line.actual_readings),
            format_decimal(line.expected_quantity),
            "[green]ok[/]" if line.exact else "[red]DIFF[/]",
        )
    console.print(table)
    style = "bold green" if report.exact else "bold red"
    console.print(f"[{style}]reconciliation: {report.summary()}[/]")


def print_webhooks(d: Delivered) -> None:
    """The webhooks demo: what the local receiver got, verified."""
    style = "bold green" if d.exact else "bold red"
    console.print(f"[{style}]webhooks:[/] {summary(d)}")


def print_automation(a: Automation) -> None:
    """The automation demo: the alerts its rules raised."""
    console.print(f"[bold]alerts[/] (customer {a.customer_id}, printer {a.device_id}):")
    for kind, name, value in a.events:
        console.print(f"  {kind}: {name} at {value}")
    name, status, detail = a.command
    console.print(
        f"  the toner rule's command {name} to the printer over MQTT: {status} ({detail})"
    )
    for reason, level, state in a.orders:
        console.print(f"  replenishment order (toner, {reason} at {level}%): {state}")
    style = "bold green" if a.exact else "bold red"
    console.print(
        f"[{style}]alerts {'as expected' if a.exact else 'NOT as expected'}[/]: both fired "
        f"{a.seconds_to_alert:.1f} s after the publish (in the outbox, GET /v1/events); "
        f"{a.firing} firing in GET /v1/alerts?state=firing before the new cartridge"
    )


def print_sales(s: Sales) -> None:
    """The inside-sales demo: insights with their arithmetic, a quote sent and accepted."""
    h = s.health
    console.print(f"[bold]inside sales[/] (customer {s.customer_id}, a sales staff token):")
    points = ", ".join(f"{k} {v}" for k, v in h["points"].items())
    console.print(f"  health {h['score']} ({h['band']}, {h['trend']}): {points}")
    for name in ("to_included", "projected_linear", "projected_weekday"):
        f = s.figures.get(name)
        if f is not None:
            console.print(f"  {name} = {f['value']}  [dim]{f['formula_id']}: {f['formula']}[/]")
    total = s.money.get("projected_total_weekday")
    if total is not None:
        console.print(
            f"  projected total (weekday-weighted) {total['value']} {total['inputs']['currency']}"
        )
    style = "bold green" if s.exact else "bold red"
    console.print(
        f"[{style}]quote {s.quote_id}: {' -> '.join(s.statuses)}[/] (drafted and sent by sales, "
        f"accepted with the customer's own key; the order: subscription to "
        f"{s.subscription_plan}); every figure in GET /v1/customers/{s.customer_id}/insights"
    )


def print_desk(d: Desk) -> None:
    """The desk demo: the call list over a generated history."""
    console.print(
        f"[bold]inside-sales desk[/] ({d.readings:,} readings of a 120-day history, "
        f"customers {d.prefix}-*, {d.refreshed} customers' insights computed):"
    )
    for c in d.calls:
        console.print(
            f"  call {c['customer_id']}: value {c['value']} {c['currency']}, "
            f"{', '.join(c['reasons'])}; growth {c['growth_30d']}, health {c['health']} "
            f"({c['band']}); suggested plan {c['suggested_plan']}"
        )
    style = "bold green" if d.exact else "bold red"
    console.print(
        f"[{style}]planted cases in the history's first 20 calls: {d.precision:.0%}[/] "
        "(GET /v1/insights/call-list, GET /v1/insights/customers?sort=-growth_30d)"
    )


def print_console(c: ConsoleLook) -> None:
    """The console demo: what Chromium showed, and how to open it yourself."""
    console.print("[bold]console[/] (Debian's Chromium, headless):")
    style = "bold green" if c.calls_shown == c.calls_api else "bold red"
    console.print(
        f"  [{style}]call list as a seller: {len(c.calls_shown)} calls shown, "
        f"{len(c.calls_api)} from GET /v1/insights/call-list, same order: "
        f"{c.calls_shown == c.calls_api}[/]"
    )
    if c.customer_id:
        console.print(
            f"  customer page of {c.customer_id}: every section drawn in {c.ready_ms:,.0f} ms"
        )
    style = "bold green" if not c.problems else "bold red"
    console.print(
        f"  [{style}]{len(c.problems)} script errors or requests off the API's origin[/]"
        + "".join(f"\n    {p}" for p in c.problems[:5])
    )
    console.print(
        f"  open it: [bold]{c.url}[/] (now with `make demo DEMO_ARGS=--hold`, or after the "
        "demo with `make up`: the same store); sign in with the admin token (dev: "
        "dev-admin-token), a staff token (POST /v1/staff-tokens, role sales) or a customer's "
        "API key"
    )


def print_corrections(c: Corrections) -> None:
    """The corrections demo: the closed month, the late pages, the restatement."""
    console.print(f"[bold]billing periods and corrections[/] (customer {c.customer_id}):")
    console.print(
        f"  {c.period} closed: {c.closed_pages} pages, usage {c.closed_usage}, statement "
        f"{c.statement_id} total {c.closed_total}"
    )
    console.print(
        f"  200 late pages of {c.period} over MQTT: now {c.restated_pages} pages; restated "
        f"through the tiers: {c.restatement} (the 200 pages rated alone: {c.late_pages_alone}), "
        f"lands on {c.lands_on}"
    )
    console.print(
        f"  voids: the middle reading (4,000 of 1,000 / 4,000 / 6,900) restated "
        f"{c.middle_void_restatements} statements (one delta of 5,900 for two); the late "
        f"reading (7,100) restated {c.void_credit}, reason {c.void_reason} "
        "(POST /v1/readings/void; the readings stay stored, marked void)"
    )
    style = "bold green" if c.exact else "bold red"
    console.print(
        f"[{style}]restatement {'equals' if c.exact else 'DIFFERS from'} the engine's "
        f"rate(6100) - rate(5900) = {c.expected}; the closed statement's bytes "
        f"{'unchanged' if c.bytes_unchanged else 'CHANGED'}[/]"
    )
