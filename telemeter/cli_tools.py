"""The ``telemeter`` tools that drive a running stack: ``simulate``, ``demo``, ``load`` and
``chaos`` (the deployables' commands are in ``telemeter/cli.py``)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from telemeter.cli_common import run_async
from telemeter.config import Settings


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
    from devices import (
        automation_demo,
        console_demo,
        corrections,
        desk_demo,
        report,
        sales_demo,
        webhook_demo,
    )
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
            hooks = await asyncio.to_thread(webhook_demo.Receiver, config.api_url, config.api_token)
            try:
                fixed = await asyncio.to_thread(corrections.run, config)
                report.print_corrections(fixed)
                acted = await asyncio.to_thread(automation_demo.run, config)
                report.print_automation(acted)
                sold = await asyncio.to_thread(
                    sales_demo.run,
                    config.api_url,
                    config.api_token,
                    acted.customer_id,
                    f"{acted.customer_id}-printer-pro",
                )
                report.print_sales(sold)
                delivered = await asyncio.to_thread(hooks.collect)
            finally:
                await asyncio.to_thread(hooks.close)
            report.print_webhooks(delivered)
            desk = await desk_demo.run(stack.store, config.api_url, config.api_token)
            report.print_desk(desk)
            looked = await console_demo.run(config.api_url, config.api_token)
            report.print_console(looked)
            exact = all(x.exact for x in (outcome, fixed, acted, sold, delivered, desk, looked))
            if args.hold:
                report.console.print(f"holding: the console at {looked.url}; Ctrl-C stops")
                await asyncio.Event().wait()
            return 0 if exact else 1

    return run_async(main)


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


def add_load_parser(sub: Any) -> None:
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
    add_device_login_options(load)
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
        work_dir=settings.run_dir / ("chaos-cluster" if args.cluster else "chaos"),
        cluster=args.cluster,
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


def add_device_login_options(p: argparse.ArgumentParser) -> None:
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


def add_sim_options(
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
    add_device_login_options(p)
