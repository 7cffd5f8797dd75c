"""What the console reads besides the existing routes, through the API (ASGI) on a real chDB
store: who a token is (``/v1/me``), the pipeline's metrics as JSON, when each device last
reported, orders of one customer; and the console's own files at ``/console``, served with
a same-origin Content Security Policy (or a 503 page saying how to build them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from api.app import create_app
from api.console import install
from api.deps import ApiContext
from schemas.catalog import CustomerSpec, DeviceKindSpec, DeviceSpec
from schemas.identity import StaffRole
from schemas.orders import Order, OrderStatus
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from tests.api.conftest import api_client
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
async def seeded(store: ClickHouseStore) -> dict[str, str]:
    """Two customers; devices that report hourly (active), went quiet 2 days ago (silent),
    reported once an hour ago, or never; an order each for two customers; tokens."""
    await store.put_device_kind("console-meter", DeviceKindSpec(meters=["pages_printed"]), NOW)
    for c in ("con-a", "con-b"):
        await store.put_customer(c, CustomerSpec(name=c.upper()), NOW)
    start = NOW - timedelta(days=10)
    for d, customer in (("dev-on", "con-a"), ("dev-quiet", "con-a"), ("dev-once", "con-a")):
        await store.put_device(d, DeviceSpec(kind="console-meter", customer_id=customer), start)
    never = DeviceSpec(kind="console-meter", customer_id="con-b")
    await store.put_device("dev-never", never, start)
    rows = []
    for h in range(24 * 8):
        at = NOW - timedelta(days=8) + timedelta(hours=h)
        rows.append(ReadingRow("dev-on", h, 0, "pages_printed", at, Decimal(h), at, at, 0))
        if at <= NOW - timedelta(days=2):
            rows.append(ReadingRow("dev-quiet", h, 0, "pages_printed", at, Decimal(h), at, at, 0))
    once = NOW - timedelta(hours=1)
    rows.append(ReadingRow("dev-once", 0, 0, "pages_printed", once, Decimal(1), once, once, 0))
    await store.insert_readings(rows)
    for n, (device, customer) in enumerate((("dev-on", "con-a"), ("dev-never", "con-b"))):
        order = Order(
            order_id=f"ord-console-{n}",
            device_id=device,
            customer_id=customer,
            consumable="toner",
            status=OrderStatus.OPEN,
            reason="level",
            level="8",
            days_left=None,
            cycle_start=start,
            created_at=NOW,
        )
        await store.put_order(order, NOW)
    _, sales = await store.create_staff_token("console sales", StaffRole.SALES, NOW)
    _, provisioner = await store.create_staff_token("console prov", StaffRole.PROVISIONER, NOW)
    key = await store.create_api_key("con-a", "console key", NOW)
    return {"sales": sales, "provisioner": provisioner, "key": key.secret}


@pytest.fixture(scope="module")
async def admin(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client at NOW."""
    async with api_client(store, clock=lambda: NOW) as c:
        yield c


class TestMe:
    """``GET /v1/me`` says what the token is, for every kind of token."""

    async def test_each_kind_of_token(self, store: ClickHouseStore, seeded: dict[str, str]) -> None:
        """Admin token, sales and provisioner staff tokens, a customer's key."""
        expected = {
            ADMIN_TOKEN: {"kind": "admin", "role": "admin", "customer_id": None},
            seeded["sales"]: {"kind": "staff", "role": "sales", "customer_id": None},
            seeded["provisioner"]: {"kind": "staff", "role": "provisioner", "customer_id": None},
            seeded["key"]: {"kind": "customer", "role": None, "customer_id": "con-a"},
        }
        for token, want in expected.items():
            async with api_client(store, clock=lambda: NOW, token=token) as c:
                r = await c.get("/v1/me")
            assert r.status_code == 200, r.text
            body = r.json()
            assert {k: body[k] for k in want} == want
            assert token not in r.text  # the secret is never echoed

    async def test_no_token_is_401(self, store: ClickHouseStore) -> None:
        """Without a token, the guard refuses before the route."""
        async with api_client(store, clock=lambda: NOW, token=None) as c:
            assert (await c.get("/v1/me")).status_code == 401


class TestPipeline:
    """``GET /v1/ops/pipeline``: this process's ``telemeter_*`` metrics, admins only."""

    async def test_families_and_rights(
        self, store: ClickHouseStore, admin: httpx.AsyncClient, seeded: dict[str, str]
    ) -> None:
        """The bridge's and the aggregator's families are there with their samples (no
        ``_created``); a sales token gets 403."""
        r = await admin.get("/v1/ops/pipeline")
        assert r.status_code == 200, r.text
        families = {f["name"]: f for f in r.json()["families"]}
        assert {"telemeter_bridge_messages_received", "telemeter_aggregator_consumer_lag"} <= set(
            families
        )
        assert all(n.startswith("telemeter_") for n in families)
        samples = [s["name"] for f in families.values() for s in f["samples"]]
        assert "telemeter_bridge_messages_received_total" in samples
        assert not [s for s in samples if s.endswith("_created")]
        async with api_client(store, clock=lambda: NOW, token=seeded["sales"]) as c:
            assert (await c.get("/v1/ops/pipeline")).status_code == 403


class TestDeviceActivity:
    """``GET /v1/device-activity``: last seen and the silent rule of ``insights/devices.py``."""

    async def test_states(self, admin: httpx.AsyncClient, seeded: dict[str, str]) -> None:
        """Hourly and current: active, not silent; quiet for 2 days after hourly reports:
        silent; seen once an hour ago: active, not silent yet (a day's grace); never:
        neither."""
        r = await admin.get("/v1/device-activity")
        assert r.status_code == 200, r.text
        found = {d["device_id"]: d for d in r.json()["items"] if d["device_id"].startswith("dev-")}
        states = {d: (a["active"], a["silent"]) for d, a in found.items()}
        assert states == {
            "dev-on": (True, False),
            "dev-quiet": (True, True),
            "dev-once": (True, False),
            "dev-never": (False, False),
        }
        assert found["dev-on"]["last_seen"] == "2026-12-07T11:00:00.000Z"
        assert found["dev-on"]["usual_interval_s"] == 3600.0
        assert found["dev-never"]["last_seen"] is None

    async def test_filters(self, admin: httpx.AsyncClient, seeded: dict[str, str]) -> None:
        """By customer, and silent only."""
        r = await admin.get("/v1/device-activity", params={"customer_id": "con-b"})
        assert [d["device_id"] for d in r.json()["items"]] == ["dev-never"]
        r = await admin.get("/v1/device-activity", params={"silent": "true"})
        assert [d["device_id"] for d in r.json()["items"] if d["device_id"].startswith("dev-")] == [
            "dev-quiet"
        ]

    async def test_a_customer_key_is_refused(
        self, store: ClickHouseStore, seeded: dict[str, str]
    ) -> None:
        """Devices are for provisioners and admins: a customer's key gets 403."""
        async with api_client(store, clock=lambda: NOW, token=seeded["key"]) as c:
            assert (await c.get("/v1/device-activity")).status_code == 403
        async with api_client(store, clock=lambda: NOW, token=seeded["provisioner"]) as c:
            assert (await c.get("/v1/device-activity")).status_code == 200


class TestOrdersByCustomer:
    """``GET /v1/orders?customer_id=``: one customer's orders only."""

    async def test_filter(self, admin: httpx.AsyncClient, seeded: dict[str, str]) -> None:
        """con-a's order, not con-b's."""
        r = await admin.get("/v1/orders", params={"customer_id": "con-a"})
        assert r.status_code == 200, r.text
        assert [o["order_id"] for o in r.json()["items"]] == ["ord-console-0"]


class TestConsoleFiles:
    """``/console``: the built files with a same-origin policy, or how to build them."""

    def _app(self, dist: Path) -> httpx.AsyncClient:
        store = cast(Any, None)  # the console's files read no store
        app = create_app(ApiContext(store=store, admin_token=ADMIN_TOKEN, clock=lambda: NOW))
        # the app's own /console (the repository's build) gives way to this directory's
        routes = app.router.routes
        routes[:] = [r for r in routes if not getattr(r, "path", "").startswith("/console")]
        install(app, dist)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")

    async def test_served_with_a_policy(self, tmp_path: Path) -> None:
        """``/console`` redirects to ``/console/``, which is the index with a CSP that
        allows its own origin only; an asset is served from ``/console/assets``; no token
        is needed (the page is public, its API calls are not)."""
        (tmp_path / "assets").mkdir()
        (tmp_path / "index.html").write_text("<!doctype html><title>t</title>console-index")
        (tmp_path / "assets" / "app.js").write_text("console.log(1)")
        async with self._app(tmp_path) as c:
            r = await c.get("/console")
            assert (r.status_code, r.headers["location"]) == (308, "/console/")
            r = await c.get("/console/")
            assert r.status_code == 200
            assert "console-index" in r.text
            policy = r.headers["content-security-policy"]
            assert "default-src 'self'" in policy
            assert "connect-src 'self'" in policy
            assert "frame-ancestors 'none'" in policy
            r = await c.get("/console/assets/app.js")
            assert (r.status_code, r.text) == (200, "console.log(1)")

    async def test_not_built(self, tmp_path: Path) -> None:
        """Without a build: a 503 page that says to run make install."""
        async with self._app(tmp_path / "missing") as c:
            r = await c.get("/console/")
        assert r.status_code == 503
        assert "make install" in r.text
