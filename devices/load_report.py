"""Terminal output of the load generator (rich): a live line on stderr while it runs, and
the final report (sent, acknowledged, achieved rate, publish -> PUBACK latency)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from devices.load import LoadProgress, LoadResult

progress_console = Console(stderr=True, highlight=False)
console = Console(highlight=False)


def _line(p: LoadProgress) -> Text:
    text = Text()
    text.append(f"{p.elapsed_s:6.1f}s  ", style="dim")
    text.append(f"sent {p.sent:,}  acked {p.acked:,}  ")
    text.append(f"rate {p.rate:,.0f} msg/s", style="bold")
    text.append(f" (target {p.target:,.0f})  readings {p.readings:,}  ")
    text.append(f"errors {p.errors}", style="bold red" if p.errors else "green")
    return text


@contextlib.contextmanager
def live_progress() -> Iterator[Callable[[LoadProgress], None]]:
    """A live status line (sent, acked, current rate, errors), refreshed 4 times a second."""
    with Live(
        Text("registering customers and devices, starting workers...", style="dim"),
        console=progress_console,
        refresh_per_second=4,
    ) as live:

        def update(p: LoadProgress) -> None:
            live.update(_line(p))

        yield update


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def print_result(result: LoadResult) -> None:
    """The final report as a table."""
    c = result.config
    table = Table(title="Load generator", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("devices / workers", f"{c.devices:,} / {c.workers}"),
        ("target rate", f"{c.rate:,.0f} msg/s (ramp-up {c.ramp_up_s:g} s)"),
        ("messages sent", f"{result.sent:,}"),
        ("acknowledged" if c.qos else "written (QoS 0)", f"{result.acked:,}"),
        ("errors", f"{result.errors:,}"),
        ("readings", f"{result.readings:,}"),
        ("send phase", f"{result.send_s:,.2f} s"),
        ("achieved rate", f"{result.achieved_rate:,.0f} msg/s"),
        ("achieved readings/s", f"{result.readings / result.send_s if result.send_s else 0:,.0f}"),
    ]
    lat = result.latency
    label = "publish -> PUBACK" if c.qos else "publish -> written"
    if lat is not None:
        rows += [
            (f"{label} p50", _ms(lat.p50)),
            (f"{label} p90", _ms(lat.p90)),
            (f"{label} p99", _ms(lat.p99)),
            (f"{label} max", _ms(lat.max)),
        ]
    for what, value in rows:
        table.add_row(what, value)
    console.print(table)
