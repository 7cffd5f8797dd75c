"""The automation demo (``make demo``, after the corrections): usage that acts. A printer of
a customer on printer-pro reports over MQTT as the device; two alert rules watch it --
toner low (a level of 15, clearing at 30; its action: the command ``refill_scheduled``)
and 80% of the 1,000 included pages -- and the alert evaluator turns the readings into
``alert.triggered`` / ``alert.resolved`` events, which the webhook receiver of the demo
gets signed. The printer, listening for commands as the simulator's devices do, gets the
command over MQTT and acknowledges it. Its falling toner also makes one replenishment
order, which the new cartridge fulfils. Measured: from the publish to the events in the
outbox (``GET /v1/events``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from devices.corrections import PLAN, iso, ok, publish, wait_until
from devices.device_commands import execute
from devices.fleet import BrokerEndpoint, Fleet
from devices.provision import provision
from devices.simulator import SimulationConfig

WANTED = {"alert.triggered": 2, "alert.resolved": 1}
"""What the demo's rules make: toner low and pages near the allowance, then toner refilled."""


@dataclass(frozen=True, slots=True)
class Automation:
    """What the demo did and saw."""

    customer_id: str
    device_id: str
    events: list[tuple[str, str, str]]  # (type, rule name, value)
    seconds_to_alert: float
    firing: int
    command: tuple[str, str, str]  # (name, status, detail) of the rule's command
    orders: list[tuple[str, str, str]]  # (reason, level, status) of the printer's orders

    @property
    def exact(self) -> bool:
        """Each rule fired once, the toner resolved once, and nothing else came."""
        kinds = sorted((t, name) for t, name, _ in self.events)
        one_order = [status for _, _, status in self.orders] == ["fulfilled"]
        return (
            one_order
            and self.command[:2] == ("refill_scheduled", "succeeded")
            and kinds
            == [
                ("alert.resolved", "toner low"),
                ("alert.triggered", "pages near the allowance"),
                ("alert.triggered", "toner low"),
            ]
        )


def run(config: SimulationConfig, timeout_s: float = 60) -> Automation:
    """Run the demo against the API and broker of ``config``."""
    now = datetime.now(UTC)
    this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    stamp = f"{now:%Y%m%d%H%M%S}"
    customer = f"{config.prefix}-print-{stamp}" if config.prefix else f"print-{stamp}"
    device = f"{customer}-printer"
    headers = {"Authorization": f"Bearer {config.api_token}"}
    with httpx.Client(base_url=config.api_url, headers=headers, timeout=30) as http:
        ok(http.put(f"/v1/customers/{customer}", json={"name": "Print Shop"}))
        ok(http.put(f"/v1/plans/{customer}-printer-pro", json=PLAN))
        sub = {"plan_id": f"{customer}-printer-pro", "start": iso(this_month)}
        ok(http.put(f"/v1/customers/{customer}/subscription", json=sub))
        spec = {"kind": "printer", "customer_id": customer, "assigned_from": iso(this_month)}
        ok(http.put(f"/v1/devices/{device}", json=spec))
        rules: dict[str, dict[str, Any]] = {
            "toner low": {
                "device_id": device,
                "meter": "toner_pct",
                "basis": "level",
                "thresholds": [{"value": "15", "clear_at": "30"}],
                "on_trigger": {"name": "refill_scheduled", "ttl": "PT24H"},
            },
            "pages near the allowance": {
                "customer_id": customer,
                "meter": "pages_printed",
                "basis": "percent_included",
                "thresholds": [{"value": "80", "clear_at": "75"}],
            },
        }
        ids = {}
        for name, rule in rules.items():
            ids[ok(http.post("/v1/alert-rules", json={"name": name, **rule})).json()["rule_id"]] = (
                name
            )
        login = provision(http, [device], certificates=config.mqtt_ca_file is not None)[0]
        endpoint = BrokerEndpoint(config.mqtt_host, config.mqtt_port, config.mqtt_ca_file)
        topic = f"{config.topic_prefix}devices/{device}/telemetry"
        at = now - timedelta(minutes=5)
        pages = [(1, at, 0), (2, at + timedelta(minutes=1), 850)]  # 85% of 1,000 included
        printer = Fleet(
            endpoint,
            [login],
            commands=lambda _d, c: execute("printer", c),
            topic_prefix=config.topic_prefix,
        )
        printer.connect(timeout_s=30)
        try:
            publish(endpoint, login, topic, device, now, pages, timeout_s, fleet=printer)
            started = time.monotonic()
            toner = [(3, at, 40)]  # then three readings in a row under the reorder level, 10
            toner += [(4 + i, at + timedelta(minutes=1 + i), 9 - i) for i in range(3)]
            publish(endpoint, login, topic, device, now, toner, timeout_s, "toner_pct", printer)
            wait_until(lambda: len(_events(http, ids)) >= 2, timeout_s, "raise both alerts")
            seconds = time.monotonic() - started
            firing = sum(
                len(
                    ok(http.get("/v1/alerts", params={"state": "firing", "rule_id": r})).json()[
                        "items"
                    ]
                )
                for r in ids
            )
            wait_until(lambda: _command(http, device, printer), timeout_s, "answer the command")
            command = _command(http, device, printer)
        finally:
            printer.close()
        refill = [(7, at + timedelta(minutes=4), 95)]  # the new cartridge
        publish(endpoint, login, topic, device, now, refill, timeout_s, meter="toner_pct")
        wait_until(lambda: len(_events(http, ids)) >= 3, timeout_s, "resolve the toner alert")
        wait_until(lambda: _orders(http, device, "fulfilled"), timeout_s, "fulfil the order")
        assert command is not None
        events = _events(http, ids)
        return Automation(customer, device, events, seconds, firing, command, _orders(http, device))


def _orders(http: httpx.Client, device: str, status: str = "") -> list[tuple[str, str, str]]:
    """The printer's replenishment orders (in ``status``): (reason, level, status)."""
    params = {"device_id": device, **({"status": status} if status else {})}
    found = ok(http.get("/v1/orders", params=params)).json()["items"]
    return [(o["reason"], o["level"], o["status"]) for o in found]


def _command(http: httpx.Client, device: str, printer: Fleet) -> tuple[str, str, str] | None:
    """The device's first command once it has ended (pumping the printer meanwhile)."""
    printer.pump(0.05)
    found = ok(http.get(f"/v1/devices/{device}/commands")).json()["items"]
    done = [c for c in found if c["finished_at"] is not None]
    return (done[0]["name"], done[0]["status"], done[0]["detail"]) if done else None


def _events(http: httpx.Client, rules: dict[str, str]) -> list[tuple[str, str, str]]:
    """The alert events of the demo's rules: (type, rule name, value)."""
    out = []
    for kind in ("alert.triggered", "alert.resolved"):
        found: Any = ok(http.get("/v1/events", params={"type": kind, "limit": 1000})).json()
        for e in found["items"]:
            data = e["data"]
            if data["rule_id"] in rules:
                out.append((kind, rules[data["rule_id"]], data["value"]))
    return out
