"""What every benchmark scenario reports: one :class:`Measure` per table row.

A scenario module exposes ``async def measure(quick: bool = False) -> list[Measure]``
(``quick`` = a smaller run for smoke checks) and, for running it alone, a ``__main__``
that prints :func:`table` of its measures. ``bench.run`` (``make bench``) runs them all
and writes ``bench/results/<date>.md``.

Every measure names the baseline it was compared with, measured in the same run on the
same machine, so a reader sees "ours / theirs" and not a number without context.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Measure:
    """One row: what was measured, its value, the baseline of the same run, the target."""

    scenario: str  # e.g. "1. bridge throughput"
    name: str  # e.g. "bridge, 1 process"
    value: float
    unit: str  # e.g. "msg/s", "ms", "MiB"
    baseline_name: str | None = None  # e.g. "mosquitto_sub | kcat -P"
    baseline: float | None = None
    target: str = ""  # e.g. ">= 25,000 msg/s"
    met: bool | None = None  # None: no target for this row
    note: str = ""  # e.g. "zero loss: 200000 distinct (device, seq)"

    @property
    def ratio(self) -> float | None:
        """ours / baseline, when there is a baseline."""
        if self.baseline is None or not self.baseline:
            return None
        return self.value / self.baseline


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def table(measures: Iterable[Measure]) -> str:
    """A markdown table, one row per measure."""
    lines = [
        "| scenario | measure | value | baseline (same run) | ours / baseline | target | met "
        "| notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in measures:
        baseline = (
            f"{m.baseline_name}: {_number(m.baseline)} {m.unit}"
            if m.baseline is not None and m.baseline_name
            else "-"
        )
        ratio = f"{m.ratio:.2f}x" if m.ratio is not None else "-"
        met = "-" if m.met is None else ("yes" if m.met else "**no**")
        name = m.name.replace("|", "\\|")
        baseline = baseline.replace("|", "\\|")
        lines.append(
            f"| {m.scenario} | {name} | {_number(m.value)} {m.unit} | {baseline} | {ratio} "
            f"| {m.target or '-'} | {met} | {m.note.replace('|', '/') or '-'} |"
        )
    return "\n".join(lines)
