"""``make bench``: every scenario in one run, one table, written to ``bench/results/<date>.md``
and into the README between its ``bench:start``/``bench:end`` markers.

Usage: ``python -m bench.run [--quick] [--only 1,6] [--no-readme]``. ``--quick`` is a
smoke run of every scenario (a few minutes); the full run takes about 30 minutes on the
2-core development machine, most of it the 10-minute memory soak.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Measure, table
from bench.soak import soak_rate_from
from telemeter.config import REPO_ROOT

# (number, module, what it measures), in the order they run. The end-to-end scenario runs
# before the soak and the alert path, which load the pipeline at half the rate it measured.
SCENARIOS = [
    ("1", "bench.bridge_throughput", "bridge throughput"),
    ("1", "bench.shared_restart", "broker restarts with a shared subscription"),
    ("7", "bench.auth_cost", "auth and TLS cost at the broker"),
    ("6", "bench.aggregator_alone", "aggregator alone"),
    ("2", "bench.end_to_end", "end-to-end throughput"),
    ("3", "bench.soak", "freshness and memory soak (scenarios 3 and 5)"),
    ("8", "bench.alert_path", "alert path: publish -> alert event -> webhook"),
    ("4", "bench.api_latency", "API latency"),
    ("9", "bench.insights_desk", "inside-sales desk: precision@20 and latency"),
    ("10", "bench.forecast_accuracy", "forecast accuracy: MAPE of the period projections"),
    ("11", "bench.console_page", "console: a 200-device customer's page in Chromium"),
    ("12", "bench.chaos_cluster", "chaos over a 3-node Kafka (make chaos-cluster)"),
]
RESULTS = REPO_ROOT / "bench" / "results"
README = REPO_ROOT / "README.md"
MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")


def _command(*args: str) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def machine() -> str:
    """What the numbers were measured on."""
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    kafka_jars = sorted((Path.home() / ".cache" / "telemeter").glob("**/kafka_2.13-*.jar"))
    kafka = kafka_jars[-1].stem.removeprefix("kafka_2.13-") if kafka_jars else "?"
    import chdb

    return "\n".join(
        [
            f"- CPU: {os.cpu_count()} x {cpu}",
            f"- memory: {mem_kib / 1024 / 1024:.1f} GiB",
            f"- OS: {platform.platform()}",
            f"- Python {platform.python_version()}",
            f"- Mosquitto: {_command('mosquitto', '-h').removeprefix('mosquitto version ')}, "
            "config deploy/mosquitto/mosquitto.conf",
            f"- Kafka {kafka} (KRaft, one node, Java: {_command('java', '-version')})",
            f"- ClickHouse: embedded chDB {getattr(chdb, '__version__', '?')} "
            "through clickhouse-connect",
            "- everything on 127.0.0.1 of the same machine; the load generator shares the CPUs",
        ]
    )


async def _run_scenario(module_name: str, quick: bool, context: dict[str, Any]) -> list[Measure]:
    module = importlib.import_module(module_name)
    fn = module.measure
    kwargs: dict[str, Any] = {"quick": quick}
    params = inspect.signature(fn).parameters
    kwargs.update({k: v for k, v in context.items() if k in params})
    result: list[Measure] = await fn(**kwargs)
    return result


def write_results(text: str, day: str) -> Path:
    """bench/results/<day>.md"""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{day}.md"
    path.write_text(text)
    return path


def update_readme(rows: str, day: str) -> bool:
    """Replace the table between the README's markers; False when the markers are missing."""
    text = README.read_text()
    start, end = MARKERS
    if start not in text or end not in text:
        return False
    block = f"{start}\nLatest `make bench` ({day}, `bench/results/{day}.md`):\n\n{rows}\n{end}"
    README.write_text(
        re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    )
    return True


async def main(quick: bool, only: set[str] | None, readme: bool) -> int:
    """Run the scenarios, print and write the table; non-zero when a scenario failed."""
    measures: list[Measure] = []
    timings: list[str] = []
    failures: list[str] = []
    context: dict[str, Any] = {}
    began = time.monotonic()
    for number, module_name, what in SCENARIOS:
        if only is not None and number not in only:
            continue
        print(f"\n=== scenario {number}: {what} ({module_name}) ===", flush=True)
        t0 = time.monotonic()
        try:
            rows = await _run_scenario(module_name, quick, context)
        except Exception as exc:  # one broken scenario must not hide the others' numbers
            failures.append(f"scenario {number} ({module_name}) failed: {exc!r}")
            print(failures[-1], file=sys.stderr, flush=True)
            rows = []
        measures.extend(rows)
        rate = soak_rate_from(rows)
        if rate is not None:
            context["rate"] = rate
        timings.append(f"- scenario {number} ({what}): {time.monotonic() - t0:.0f} s")
        print(table(rows), flush=True)
    total = time.monotonic() - began
    rows_md = table(measures)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    met = [m for m in measures if m.met is not None]
    summary = f"{sum(1 for m in met if m.met)} of {len(met)} rows with a target meet it."
    text = "\n\n".join(
        [
            f"# Benchmark results, {day}{' (quick run)' if quick else ''}",
            f"Command: `python -m bench.run{' --quick' if quick else ''}` (`make bench`); "
            f"wall time {total / 60:.1f} min.",
            "## Machine\n\n" + machine(),
            "## Results\n\n" + rows_md + "\n\n" + summary,
            "## Time per scenario\n\n" + "\n".join(timings),
            *(["## Failures\n\n" + "\n".join(f"- {f}" for f in failures)] if failures else []),
            "How each scenario measures, and its baseline, is in the docstring of its module "
            "(`bench/<module>.py`); the profiles behind the optimisations are in "
            "`bench/results/profiles.md`.\n",
        ]
    )
    if only is None:
        path = write_results(text, day if not quick else f"{day}-quick")
        print(f"\nresults: {path.relative_to(REPO_ROOT)}")
        if readme and not quick and update_readme(rows_md + "\n\n" + summary, day):
            print("README.md: latest table updated")
    print("\n" + rows_md + "\n\n" + summary)
    print(f"total {total / 60:.1f} min")
    for f in failures:
        print(f, file=sys.stderr)
    return 1 if failures else 0


def cli() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small smoke run of each scenario")
    parser.add_argument("--only", help="comma-separated scenario numbers, e.g. 1,6")
    parser.add_argument("--no-readme", action="store_true", help="do not update README.md")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    if only is not None and "5" in only:
        only.add("3")  # 3 and 5 are one soak
    sys.exit(asyncio.run(main(args.quick, only, not args.no_readme)))


if __name__ == "__main__":
    cli()
