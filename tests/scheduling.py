"""Which test module runs first: the longest, so that the two ``make test`` processes end
together (longest-processing-time-first scheduling).

``make test`` hands whole modules to 2 pytest-xdist processes (``--dist loadfile``) in
collection order, a module to whichever process is free (``--no-loadscope-reorder``; xdist's
own reorder puts the modules with the most tests first, which here are quick, and leaves the
3-minute single-test modules for the end, when one process may stand idle). Collection
order is therefore by each module's measured seconds, longest first, from
``tests/durations.json``; a module not in it goes after the measured ones, in its usual
order. Within a module nothing moves.

Every run writes what it measured (setup, call and teardown of each test, summed per
module) into ``.run/test-durations.json`` (its modules replace their old numbers);
``make test-durations`` copies it over ``tests/durations.json`` after a full run. The file
only orders: a wrong or old number makes the suite slower, never a test pass or fail."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MEASURED = HERE / "durations.json"
WRITTEN = HERE.parent / ".run" / "test-durations.json"

_seconds: dict[str, float] = defaultdict(float)


def module_of(nodeid: str) -> str:
    """``tests/x/test_y.py`` of ``tests/x/test_y.py::TestZ::test_w[param]``."""
    return nodeid.split("::", 1)[0]


def longest_first(nodeids: list[str], seconds: dict[str, float]) -> list[int]:
    """The order (indexes into ``nodeids``) that puts the modules with the most measured
    seconds first; unmeasured modules after, in order of first appearance; a module's own
    tests keep their order."""
    first: dict[str, int] = {}
    for i, nodeid in enumerate(nodeids):
        first.setdefault(module_of(nodeid), i)
    rank = {
        m: r for r, m in enumerate(sorted(first, key=lambda m: (-seconds.get(m, 0.0), first[m])))
    }
    return sorted(range(len(nodeids)), key=lambda i: (rank[module_of(nodeids[i])], i))


def measured() -> dict[str, float]:
    """``tests/durations.json`` (empty when missing or unreadable)."""
    try:
        data = json.loads(MEASURED.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def reorder(items: list[pytest.Item]) -> None:
    """Collection order, longest modules first (``pytest_collection_modifyitems``)."""
    order = longest_first([item.nodeid for item in items], measured())
    items[:] = [items[i] for i in order]


def record(report: pytest.TestReport) -> None:
    """Add a report's seconds to its module (``pytest_runtest_logreport``)."""
    _seconds[module_of(report.nodeid)] += report.duration


def write() -> None:
    """``.run/test-durations.json`` at the end of a session (by the controller only: under
    xdist the workers' reports reach it too)."""
    if "PYTEST_XDIST_WORKER" in os.environ or not _seconds:
        return
    WRITTEN.parent.mkdir(parents=True, exist_ok=True)
    try:  # the fuzz, run beside the others, wrote its module already
        merged = {str(k): float(v) for k, v in json.loads(WRITTEN.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        merged = {}
    merged.update(_seconds)
    ordered = dict(sorted(merged.items(), key=lambda kv: -kv[1]))
    WRITTEN.write_text(json.dumps({k: round(v, 1) for k, v in ordered.items()}, indent=1) + "\n")
