"""The corrections demo (``make demo``, after the simulation): a printer's page counter in
the last complete month, the month closed, late pages sent, the closed month restated
through the tiers. Everything goes the way a real device and a billing system go: the
readings over MQTT as the device, every other step through the public API.

The numbers are the README's printer-pro case: 5,900 pages (98.00 of usage) closed; 200
late pages make 6,100 (101.50), a restatement of +3.50, where rating the 200 pages alone
would give 0.00. Then two voids: the middle reading (4,000, between 1,000 and 6,900) changes
no number -- one delta of 5,900 for two -- and the late reading (7,100) takes its 200 pages
back out: a second restatement, -3.50, reason void. The outcome is checked against the
pricing engine applied to the pages sent (``exact``)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from devices.fleet import BrokerEndpoint, Fleet
from devices.provision import provision
from devices.simulator import SimulationConfig
from rating.engine import rate
from rating.models import PlanSpec

PLAN: dict[str, Any] = {
    "name": "Printer Pro",
    "currency": "EUR",
    "billing_period": "month",
    "base_fee": "25.00",
    "minimum_commitment": "50.00",
    "charges": [
        {
            "meter": "pages_printed",
            "model": "graduated",
            "included": "1000",
            "tiers": [
                {"up_to": "5000", "unit_price": "0.02"},
                {"up_to": None, "unit_price": "0.015"},
            ],
        }
    ],
}


@dataclass(frozen=True, slots=True)
class Corrections:
    """What the demo did and saw."""

    customer_id: str
    period: str
    statement_id: str
    closed_pages: str
    closed_usage: str
    closed_total: str
    restated_pages: str
    restatement: str
    late_pages_alone: str
    lands_on: str
    expected: Decimal
    bytes_unchanged: bool
    middle_void_restatements: int
    void_credit: str
    void_reason: str

    @property
    def exact(self) -> bool:
        """The restatement is the engine's rate(new) - rate(closed), the middle void
        restated nothing, the late reading's void restated the negative, and the frozen
        statement's bytes did not move."""
        return (
            Decimal(self.restatement) == self.expected
            and self.middle_void_restatements == 0
            and Decimal(self.void_credit) == -self.expected
            and self.void_reason == "void"
            and self.bytes_unchanged
        )


def run(config: SimulationConfig, timeout_s: float = 60) -> Corrections:
    """Run the demo against the API and broker of ``config``."""
    now = datetime.now(UTC)
    this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    period = f"{last_month:%Y-%m}"
    stamp = f"{now:%Y%m%d%H%M%S}"
    customer = f"{config.prefix}-books-{stamp}" if config.prefix else f"books-{stamp}"
    device = f"{customer}-printer"
    headers = {"Authorization": f"Bearer {config.api_token}"}
    with httpx.Client(base_url=config.api_url, headers=headers, timeout=30) as http:
        ok(http.put(f"/v1/customers/{customer}", json={"name": "Books & Co"}))
        ok(http.put(f"/v1/plans/{customer}-printer-pro", json=PLAN))
        assigned = iso(last_month - timedelta(days=40))
        spec = {"kind": "printer", "customer_id": customer, "assigned_from": assigned}
        ok(http.put(f"/v1/devices/{device}", json=spec))
        login = provision(http, [device], certificates=config.mqtt_ca_file is not None)[0]
        base = this_month - timedelta(days=3)  # inside the bridge's 35-day past horizon
        topic = f"{config.topic_prefix}devices/{device}/telemetry"
        first = [(1, base, 1_000), (2, base + timedelta(days=1), 4_000)]
        first.append((3, base + timedelta(days=2), 6_900))
        endpoint = BrokerEndpoint(config.mqtt_host, config.mqtt_port, config.mqtt_ca_file)
        publish(endpoint, login, topic, device, now, first, timeout_s)
        wait_until(lambda: _pages(http, customer, last_month, this_month) == "5900", timeout_s)
        # Subscribed once the pages are in, so the closer cannot close the month before.
        sub = {"plan_id": f"{customer}-printer-pro", "start": iso(last_month)}
        ok(http.put(f"/v1/customers/{customer}/subscription", json=sub))
        closed = ok(http.post(f"/v1/customers/{customer}/periods/{period}/close"))
        statement = closed.json()
        publish(
            endpoint,
            login,
            topic,
            device,
            now,
            [(4, this_month - timedelta(hours=6), 7_100)],
            timeout_s,
        )
        wait_until(lambda: _pages(http, customer, last_month, this_month) == "6100", timeout_s)
        sid = statement["statement_id"]
        ok(http.post(f"/v1/statements/{sid}/restate"))  # or the closer did it already
        made = ok(http.get(f"/v1/statements/{sid}/restatements")).json()["items"][-1]
        # The void restates what it changes (or the closer did, a moment before it): the
        # statement's restatements are the record either way.
        _void(http, device, 2, "4,000 was a test page run at install")
        middle = _restatements(http, sid)
        _void(http, device, 4, "the late pages were a duplicate job")
        late = _restatements(http, sid)[-1]
        unchanged = ok(http.get(f"/v1/statements/{sid}")).content == closed.content
    plan = PlanSpec.model_validate(PLAN)
    expected = rate(plan, {"pages_printed": Decimal(6100)}).total
    expected -= rate(plan, {"pages_printed": Decimal(5900)}).total
    alone = rate(plan, {"pages_printed": Decimal(200)}).usage_total
    return Corrections(
        customer_id=customer,
        period=period,
        statement_id=sid,
        closed_pages=statement["segments"][0]["quantities"]["pages_printed"],
        closed_usage=statement["rating"]["usage_total"],
        closed_total=statement["total"],
        restated_pages=made["lines"][0]["new_quantity"],
        restatement=made["amount"],
        late_pages_alone=f"{alone:.2f}",
        lands_on=made["lands_on"],
        expected=expected,
        bytes_unchanged=unchanged,
        middle_void_restatements=len(middle) - 1,
        void_credit=late["amount"],
        void_reason=late["reason"],
    )


def _void(http: httpx.Client, device: str, seq: int, reason: str) -> None:
    body = {"device_id": device, "seq": seq, "reason": reason}
    ok(http.post("/v1/readings/void", json=body))


def _restatements(http: httpx.Client, sid: str) -> list[Any]:
    return list(ok(http.get(f"/v1/statements/{sid}/restatements")).json()["items"])


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def ok(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.text}"
        )
    return response


def _pages(http: httpx.Client, customer: str, start: datetime, end: datetime) -> str:
    params = {"meter": "pages_printed", "from": iso(start), "to": iso(end)}
    return str(http.get(f"/v1/customers/{customer}/usage", params=params).json().get("total"))


def wait_until(done: Any, timeout_s: float, what: str = "deliver the pages") -> None:
    """Poll ``done`` until true; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pipeline did not {what} within {timeout_s:.0f} s")
        time.sleep(0.1)


def publish(
    endpoint: BrokerEndpoint,
    login: Any,
    topic: str,
    device: str,
    now: datetime,
    readings: list[tuple[int, datetime, int]],
    timeout_s: float,
    meter: str = "pages_printed",
    fleet: Fleet | None = None,
) -> None:
    """Publish one QoS 1 message per reading (of ``meter``) as the device and wait for the
    acks (on ``fleet``, connected already and left open, if given)."""
    own = fleet is None
    if fleet is None:
        fleet = Fleet(endpoint, [login])
    try:
        if own:
            fleet.connect(timeout_s=30)
        before = fleet.acked + fleet.refused
        for seq, at, value in readings:
            body = {
                "device_id": device,
                "seq": seq,
                "sent_at": iso(now),
                "readings": [{"meter": meter, "value": str(value), "at": iso(at)}],
            }
            fleet.publish_as(device, topic, json.dumps(body).encode(), 1)
        deadline = time.monotonic() + timeout_s
        while fleet.acked + fleet.refused - before < len(readings) and time.monotonic() < deadline:
            fleet.pump(0.01)
        if fleet.acked + fleet.refused - before < len(readings) or fleet.refused:
            raise RuntimeError(f"the broker did not acknowledge all {len(readings)} messages")
    finally:
        if own:
            fleet.close()
