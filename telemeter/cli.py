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
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from telemeter import logs
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


def _run(main: Callable[[], Coroutine[Any, Any, int | None]]) -> int:
    try:
        return asyncio.run(main()) or 0
    except (KeyboardInterrupt, asyncio.CancelledError):  # a signal while it was starting
        return 130


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
    return _run(lambda: _serve(lambda: run_stack(settings)))


def _serve_metrics(port: int, variable: str) -> None:
    from prometheus_client import start_http_server

    from telemeter.lifecycle import StartFailed

    try:
        start_http_server(port, addr="127.0.0.1")
    except OSError as exc:
        raise StartFailed(
            "metrics",
            f"cannot serve /metrics on 127.0.0.1:{port}: {exc.strerror}",
            f"is this command running already? Stop it, or set {variable}",
        ) from exc
    log.info("metrics_served", url=f"http://127.0.0.1:{port}/metrics")


def cmd_bridge(settings: Settings, _args: argparse.Namespace) -> int:
    """Run the bridge alone (Prometheus metrics on bridge.metrics_port)."""
    from telemeter.components import run_bridge

    _serve_metrics(settings.bridge.metrics_port, "TELEMETER_BRIDGE__METRICS_PORT")
    return _run(lambda: _serve(lambda: run_bridge(settings)))


def cmd_aggregator(settings: Settings, args: argparse.Namespace) -> int:
    """Run the aggregator (metrics on aggregator.metrics_port); --api also serves the API
    from this process, which embedded chDB needs (one process per data directory)."""
    from aggregator.service import tune_garbage_collector
    from telemeter.stack import run_aggregator_process

    tune_garbage_collector()
    _serve_metrics(settings.aggregator.metrics_port, "TELEMETER_AGGREGATOR__METRICS_PORT")
    return _run(lambda: _serve(lambda: run_aggregator_process(settings, with_api=args.api)))


def cmd_api(settings: Settings, _args: argparse.Namespace) -> int:
    """Run the API alone."""
    from telemeter.stack import run_api_process

    return _run(lambda: _serve(lambda: run_api_process(settings)))


def cmd_topics(settings: Settings, _args: argparse.Namespace) -> int:
    """Create the Kafka topics and ACLs."""
    from telemeter.components import prepare_kafka, topics
    from telemeter.lifecycle import Component

    async def main() -> None:
        async with Component("topics", announce=False) as c:
            await prepare_kafka(settings, "admin")
            c.running()

    _run(main)
    print("topics ready: " + ", ".join(t.name for t in topics(settings)))
    return 0


def cmd_broker_sync(settings: Settings, _args: argparse.Namespace) -> int:
    """Render the broker's device users from the store's credentials and reload it."""
    from telemeter.components import device_credentials, open_store

    async def main() -> int:
        async with open_store(settings) as store:
            await device_credentials(settings, store).sync()
        return 0

    code = _run(main)
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


def _sim_config(settings: Settings, args: argparse.Namespace) -> Any:
    from devices.simulator import SimulationConfig

    token, _ = settings.admin_token()
    return SimulationConfig(
        customers=args.customers,
        devices_per_kind=args.devices_per_kind,
        rate=args.rate,
        duration_s=args.duration,
        qos=args.qos,
        seed=args.seed,
        mqtt_host=settings.mqtt.host,
        mqtt_port=args.mqtt_port or _device_port(settings, args.tls),
        mqtt_ca_file=settings.mqtt.ca_file if args.tls else None,
        topic_prefix=settings.mqtt.topic_prefix,
        api_url=args.api_url or f"http://{settings.api.host}:{settings.api.port}",
        api_token=token.get_secret_value(),
        prefix=args.prefix,
        duplicate_rate=args.duplicates,
        reset_rate=args.resets,
        ticks_per_message=args.ticks_per_message,
    )


def _device_port(settings: Settings, tls: bool) -> int:
    """Where devices log in: the broker's password listener, or its mutual-TLS one."""
    return settings.mqtt.tls_port if tls else settings.mqtt.port


def _truth_file(settings: Settings, args: argparse.Namespace) -> Path:
    return Path(args.truth) if args.truth else settings.run_dir / "ground-truth.json"


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    """Simulate devices against a running stack, write the ground truth, and reconcile."""
    from devices import report
    from devices.reconcile import reconcile
    from devices.simulator import Simulator

    config = _sim_config(settings, args)
    with report.progress(config) as on_progress:
        result = Simulator(config, progress=on_progress).run()
    result.write(_truth_file(settings, args))
    report.print_simulation(result, _truth_file(settings, args))
    if args.no_reconcile:
        return 0
    outcome = reconcile(config.api_url, config.api_token, result)
    report.print_usage(outcome)
    return 0 if outcome.exact else 1


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Run the stack, simulate devices, print usage read from the API and reconcile."""
    from devices import report
    from devices.reconcile import reconcile
    from devices.simulator import Simulator
    from telemeter.stack import run_stack

    config = _sim_config(settings, args)

    async def main() -> int:
        async with run_stack(settings) as stack:
            config.api_url = stack.api_url
            with report.progress(config) as on_progress:
                result = await asyncio.to_thread(Simulator(config, progress=on_progress).run)
            result.write(_truth_file(settings, args))
            report.print_simulation(result, _truth_file(settings, args))
            outcome = await asyncio.to_thread(reconcile, config.api_url, config.api_token, result)
            report.print_usage(outcome)
            return 0 if outcome.exact else 1

    return _run(main)


def _readings_range(text: str) -> tuple[int, int]:
    """``N`` (every message N readings) or ``A-B`` (a seeded random A..B per message)."""
    low, _, high = text.partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or A-B, got {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1] <= 1000:
        raise argparse.ArgumentTypeError("readings must satisfy 1 <= A <= B <= 1000")
    return bounds


def cmd_load(settings: Settings, args: argparse.Namespace) -> int:
    """Offer load from thousands of simulated devices in worker processes against a running
    stack; print sent/acked/rate/latency, optionally reconcile with the API."""
    from devices import load_report, report
    from devices.load import LoadConfig, run_load
    from devices.reconcile import reconcile

    token, _ = settings.admin_token()
    low, high = args.readings
    config = LoadConfig(
        devices=args.devices,
        workers=args.workers,
        rate=args.rate,
        ramp_up_s=args.ramp_up,
        duration_s=None if args.messages else args.duration,
        messages=args.messages,
        readings_per_message=high,
        readings_min=low,
        qos=args.qos,
        seed=args.seed,
        customers=args.customers,
        prefix=args.prefix,
        mqtt_host=settings.mqtt.host,
        mqtt_port=args.mqtt_port or _device_port(settings, args.tls),
        mqtt_ca_file=settings.mqtt.ca_file if args.tls else None,
        topic_prefix=settings.mqtt.topic_prefix,
        api_url=args.api_url or f"http://{settings.api.host}:{settings.api.port}",
        api_token=token.get_secret_value(),
        register=not args.no_register,
    )
    with load_report.live_progress() as on_progress:
        result = run_load(config, progress=on_progress)
    load_report.print_result(result)
    if args.truth:
        result.simulation_result().write(Path(args.truth))
    lost = config.qos > 0 and result.acked < result.sent
    if not args.reconcile:
        return 1 if lost else 0
    outcome = reconcile(config.api_url, config.api_token, result.simulation_result())
    report.print_usage(outcome)
    return 0 if outcome.exact and not lost else 1


def _add_load_parser(sub: Any) -> None:
    load = sub.add_parser(
        "load",
        help=(cmd_load.__doc__ or "").strip(),
        description="Offer load from simulated devices (delta meters, integer values) in "
        "worker processes that share a few MQTT connections each, at a target rate reached "
        "by a linear ramp-up, each device its own MQTT connection logged in as itself. "
        "Registers the customers and devices and issues their credentials through the API "
        "first. "
        "Live progress on stderr; the final report shows sent, acknowledged, achieved rate "
        "and publish->PUBACK latency percentiles. Exit code 1 when messages stayed "
        "unacknowledged or (with --reconcile) the API does not account for every reading.",
    )
    add = load.add_argument
    add("--devices", type=int, default=2000, help="simulated devices (default 2000)")
    add("--workers", type=int, default=2, help="worker processes (default 2)")
    add("--rate", type=float, default=5000, help="target messages/s in total (default 5000)")
    add("--ramp-up", type=float, default=5, help="seconds to reach the rate linearly (default 5)")
    add("--duration", type=float, default=60, help="seconds of sending (default 60)")
    add("--messages", type=int, default=None, help="send this many messages instead of --duration")
    add(
        "--readings",
        type=_readings_range,
        default=(1, 1),
        help="readings per message: N, or A-B for a seeded random count (default 1)",
    )
    add("--qos", type=int, choices=(0, 1), default=1, help="MQTT QoS (default 1)")
    add("--seed", type=int, default=7, help="seed of fleet, values and counts (default 7)")
    add("--customers", type=int, default=10, help="customers the devices belong to (default 10)")
    add("--prefix", default="load", help="prefix of customer and device ids (default 'load')")
    add("--api-url", default=None, help="API base URL (default from settings)")
    _add_device_login_options(load)
    add("--no-register", action="store_true", help="do not create customers/devices first")
    add("--reconcile", action="store_true", help="afterwards, compare the API with the truth")
    add("--truth", default=None, help="write the ground truth JSON to this file")
    load.set_defaults(fn=cmd_load)


def cmd_chaos(settings: Settings, args: argparse.Namespace) -> int:
    """Kill and restart bridge, aggregator, Kafka and Mosquitto while devices publish; then
    reconcile exactly."""
    from telemeter.chaos import ChaosConfig, ChaosRun, chaos_settings

    config = ChaosConfig(
        duration_s=args.duration,
        kills=args.kills,
        seed=args.seed,
        rate=args.rate,
        work_dir=settings.run_dir / "chaos",
    )
    report = ChaosRun(config, chaos_settings(settings, config)).run()
    text = report.summary()
    print(text)
    out = config.work_dir / "report.txt"
    out.write_text(
        text
        + "\n\nkills (seconds into the run, component):\n"
        + "\n".join(f"  {at:7.1f}s {name}" for at, name in report.kills)
        + "\n"
    )
    print(f"report: {out}")
    return 0 if report.exact else 1


def _add_device_login_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls",
        action="store_true",
        help="devices log in with client certificates from the API on the broker's TLS "
        "listener (default: passwords on the plain listener)",
    )
    p.add_argument(
        "--mqtt-port",
        type=int,
        default=None,
        help="broker port for devices (default TELEMETER_MQTT__PORT, with --tls "
        "TELEMETER_MQTT__TLS_PORT)",
    )


def _add_sim_options(
    p: argparse.ArgumentParser, *, duration: float, per_kind: int, rate: float
) -> None:
    p.add_argument("--customers", type=int, default=5, help="number of customers (default 5)")
    p.add_argument(
        "--devices-per-kind",
        type=int,
        default=per_kind,
        help=f"devices of each of the 5 kinds (default {per_kind})",
    )
    p.add_argument(
        "--rate", type=float, default=rate, help=f"messages/s in total (default {rate:g})"
    )
    p.add_argument(
        "--duration", type=float, default=duration, help=f"seconds (default {duration:g})"
    )
    p.add_argument("--qos", type=int, choices=(0, 1), default=1, help="MQTT QoS (default 1)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument("--prefix", default="sim", help="prefix of device ids (default 'sim')")
    p.add_argument(
        "--duplicates",
        type=float,
        default=0.02,
        help="probability of resending a recent message (default 0.02)",
    )
    p.add_argument(
        "--resets",
        type=float,
        default=0.005,
        help="probability of a counter reset per counter reading (default 0.005)",
    )
    p.add_argument(
        "--ticks-per-message",
        type=int,
        default=1,
        help="samples per meter in one message (default 1)",
    )
    p.add_argument(
        "--truth",
        default=None,
        help="where to write the ground truth JSON (default <run dir>/ground-truth.json)",
    )
    p.add_argument("--api-url", default=None, help="API base URL (default from settings)")
    _add_device_login_options(p)


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
    _add_sim_options(sim, duration=30, per_kind=20, rate=200)
    sim.add_argument("--no-reconcile", action="store_true", help="only publish")
    sim.set_defaults(fn=cmd_simulate)
    _add_load_parser(sub)
    chaos = sub.add_parser("chaos", help=(cmd_chaos.__doc__ or "").strip())
    chaos.add_argument("--duration", type=float, default=330, help="seconds of load (330)")
    chaos.add_argument("--kills", type=int, default=24, help="kills/restarts in total (24)")
    chaos.add_argument("--seed", type=int, default=1, help="random seed of the schedule (1)")
    chaos.add_argument("--rate", type=float, default=150, help="messages/s (150)")
    chaos.set_defaults(fn=cmd_chaos)
    demo = sub.add_parser("demo", help=cmd_demo.__doc__)
    _add_sim_options(demo, duration=30, per_kind=60, rate=300)
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
