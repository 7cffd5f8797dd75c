"""``telemeter``: one command line for every deployable.

telemeter up            bridge + aggregator + API in one process (embedded chDB)
telemeter bridge        MQTT -> Kafka only
telemeter aggregator    Kafka -> ClickHouse only
telemeter api           the HTTP API only
telemeter simulate      simulated devices, with ground truth
telemeter load          thousands of devices from worker processes at a target rate
telemeter demo          the stack + a simulation + usage table + reconciliation
telemeter topics        create the Kafka topics (and, with admin credentials, the ACLs)
telemeter broker-sync   rewrite the MQTT broker's device users from the store, reload it
telemeter check-config  validate the settings and print them (secrets masked)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import structlog
from pydantic import ValidationError

from telemeter import logs
from telemeter.cli_common import run_async
from telemeter.cli_tools import (
    add_load_parser,
    add_sim_options,
    cmd_chaos,
    cmd_demo,
    cmd_simulate,
)
from telemeter.config import Settings

log = structlog.get_logger("telemeter")
ENV_FILE = ".env"  # what Settings reads, from the working directory


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        # Never the input values: they may be the very secrets that were refused.
        problems = [
            f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        ]
        print("telemeter: invalid configuration:\n" + "\n".join(problems), file=sys.stderr)
        raise SystemExit(2) from None


async def _serve(build: Callable[[], contextlib.AbstractAsyncContextManager[object]]) -> int:
    """Start what ``build()`` builds, and stop it in reverse order on SIGINT/SIGTERM (exit
    0). A signal during the start cancels the start; a second signal ends the process at
    once. A component that fails stops everything and is raised (exit 1, one line)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    stop = asyncio.Event()
    started = False

    def on_signal(sig: signal.Signals) -> None:
        for handled in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(handled)
        log.info("shutting_down", reason=sig.name)
        if started:
            stop.set()
        else:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    async with build():
        started = True
        await stop.wait()
    return 0


def cmd_up(settings: Settings, _args: argparse.Namespace) -> int:
    """Run the whole stack until SIGINT/SIGTERM."""
    from aggregator.service import tune_garbage_collector
    from telemeter.stack import run_stack

    tune_garbage_collector()  # this process runs the aggregator
    return run_async(lambda: _serve(lambda: run_stack(settings)))


def _serve_metrics(host: str, port: int, variable: str) -> None:
    from prometheus_client import start_http_server

    from telemeter.lifecycle import StartFailed

    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        raise StartFailed(
            "metrics",
            f"cannot serve /metrics on {host}:{port}: {exc.strerror}",
            f"is this command running already? Stop it, or set {variable}",
        ) from exc
    log.info("metrics_served", url=f"http://{host}:{port}/metrics")


def cmd_bridge(settings: Settings, _args: argparse.Namespace) -> int:
    """Run the bridge alone (Prometheus metrics on bridge.metrics_port)."""
    from telemeter.components import run_bridge

    bridge = settings.bridge
    _serve_metrics(bridge.metrics_host, bridge.metrics_port, "TELEMETER_BRIDGE__METRICS_PORT")
    return run_async(lambda: _serve(lambda: run_bridge(settings)))


def cmd_aggregator(settings: Settings, args: argparse.Namespace) -> int:
    """Run the aggregator (metrics on aggregator.metrics_port); --api also serves the API
    from this process, which embedded chDB needs (one process per data directory)."""
    from aggregator.service import tune_garbage_collector
    from telemeter.stack import run_aggregator_process

    tune_garbage_collector()
    aggregator = settings.aggregator
    _serve_metrics(
        aggregator.metrics_host, aggregator.metrics_port, "TELEMETER_AGGREGATOR__METRICS_PORT"
    )
    return run_async(lambda: _serve(lambda: run_aggregator_process(settings, with_api=args.api)))


def cmd_api(settings: Settings, _args: argparse.Namespace) -> int:
    """Run the API alone."""
    from telemeter.stack import run_api_process

    return run_async(lambda: _serve(lambda: run_api_process(settings)))


def cmd_topics(settings: Settings, _args: argparse.Namespace) -> int:
    """Create the Kafka topics and ACLs."""
    from telemeter.components import prepare_kafka, topics
    from telemeter.lifecycle import Component

    async def main() -> None:
        async with Component("topics", announce=False) as c:
            await prepare_kafka(settings, "admin")
            c.running()

    run_async(main)
    print("topics ready: " + ", ".join(t.name for t in topics(settings)))
    return 0


def cmd_broker_sync(settings: Settings, _args: argparse.Namespace) -> int:
    """Render the broker's device users from the store's credentials and reload it."""
    from telemeter.api_server import device_credentials
    from telemeter.components import open_store

    async def main() -> int:
        async with open_store(settings) as store:
            await device_credentials(settings, store).sync()
        return 0

    code = run_async(main)
    print(f"broker files written to {settings.broker.auth_dir}")
    return code


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    """Print the effective settings (secrets masked), name every TELEMETER_* variable that
    does nothing, and with --connect try each service; exit 1 on any problem."""
    from telemeter.config import unknown_variables

    print(json.dumps(settings.public_dump(), indent=2))
    problems = unknown_variables(os.environ, Path(ENV_FILE))
    for problem in problems:
        print(f"telemeter: {problem}", file=sys.stderr)
    failed = any(not p.deprecated for p in problems)
    if args.connect:
        for service, trouble in _run_checks(settings):
            print(
                f"{service}: {trouble or 'reachable'}", file=sys.stderr if trouble else sys.stdout
            )
            failed = failed or trouble is not None
    return 1 if failed else 0


def _run_checks(settings: Settings) -> list[tuple[str, str | None]]:
    from telemeter.stack import check_services

    return asyncio.run(check_services(settings))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="telemeter", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in (
        ("up", cmd_up),
        ("bridge", cmd_bridge),
        ("api", cmd_api),
        ("topics", cmd_topics),
        ("broker-sync", cmd_broker_sync),
    ):
        sub.add_parser(name, help=(fn.__doc__ or "").strip()).set_defaults(fn=fn)
    check = sub.add_parser("check-config", help=(cmd_check_config.__doc__ or "").strip())
    check.add_argument(
        "--connect",
        action="store_true",
        help="also try MQTT (TCP/TLS), Kafka (metadata, as the API's principal) and the store "
        "(opened as the API opens it); one line each",
    )
    check.set_defaults(fn=cmd_check_config)
    agg = sub.add_parser("aggregator", help=(cmd_aggregator.__doc__ or "").strip())
    agg.add_argument("--api", action="store_true", help="also serve the HTTP API")
    agg.set_defaults(fn=cmd_aggregator)
    sim = sub.add_parser("simulate", help=cmd_simulate.__doc__)
    add_sim_options(sim, duration=30, per_kind=20, rate=200)
    sim.add_argument("--no-reconcile", action="store_true", help="only publish")
    sim.set_defaults(fn=cmd_simulate)
    add_load_parser(sub)
    chaos = sub.add_parser("chaos", help=(cmd_chaos.__doc__ or "").strip())
    chaos.add_argument("--duration", type=float, default=330, help="seconds of load (330)")
    chaos.add_argument("--kills", type=int, default=24, help="kills/restarts in total (24)")
    chaos.add_argument("--seed", type=int, default=1, help="random seed of the schedule (1)")
    chaos.add_argument("--rate", type=float, default=150, help="messages/s (150)")
    chaos.add_argument(
        "--cluster",
        action="store_true",
        help="Kafka is the 3-node cluster (services.sh cluster-up): each Kafka hit kills a node",
    )
    chaos.set_defaults(fn=cmd_chaos)
    demo = sub.add_parser("demo", help=cmd_demo.__doc__)
    add_sim_options(demo, duration=30, per_kind=60, rate=300)
    demo.add_argument(
        "--hold",
        action="store_true",
        help="keep the stack (and the console) running after the demo, until Ctrl-C",
    )
    demo.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``telemeter`` console script. A start that fails for a reason an
    operator can fix (a service down, a port taken) and a component that dies end with one
    line on stderr and exit 1, not a traceback."""
    from telemeter.config import unknown_variables
    from telemeter.lifecycle import StackError

    args = build_parser().parse_args(argv)
    settings = _settings()
    logs.configure(settings.log_level, settings.log_format, secrets=settings.secrets())
    problems = unknown_variables(os.environ, Path(ENV_FILE))
    if problems and args.fn is not cmd_check_config:  # which reports them itself
        log.warning(
            "unknown_settings_variables",
            problems=[str(p) for p in problems],
            hint="they change nothing; `telemeter check-config` lists them",
        )
    try:
        return int(args.fn(settings, args))
    except StackError as exc:  # StartFailed or ComponentFailed: each says what happened
        print(f"telemeter: {logs.REDACT(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
