"""The console in Debian's Chromium (Playwright, ``devices/browser.py``) against the whole
stack on real components (Mosquitto, Kafka, chDB): sign in, the call list, a quote drafted
and sent from it, seen on the customer page and accepted with the customer's key; a dead
letter replayed; the charts draw the numbers the API returns; the keyboard alone gets from
sign-in to a quote; a customer's key sees its own data only; ``/docs`` works offline.

Every page is watched: a JavaScript error, an error in the console or a request to anywhere
but the API's origin fails the test (``Watch.problems``). The screenshots of the main pages
at the history's fixed seed go to ``.run/screenshots`` (``make screenshots`` copies them
for the README)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page

from devices import history
from devices.browser import READY, Watch, chromium, ready_ms, sign_in, watched_page
from schemas.telemetry import format_time
from telemeter.config import RUN_DIR, Settings
from telemeter.local_broker import LocalBroker
from telemeter.stack import RunningStack
from tests.conftest import ADMIN_TOKEN
from tests.support import issue_logins, publish_as, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.usefixtures("broker"),
]

SHOTS = RUN_DIR / "screenshots"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BIG = "fleet-c0000"


@dataclass(frozen=True, slots=True)
class Desk:
    """What the module seeded: the tokens and the customer the call list leads with."""

    url: str
    sales: str
    customer_id: str
    key: str
    call: dict[str, Any]


@pytest.fixture(scope="module")
async def desk(stack: RunningStack) -> Desk:
    """A history of 24 printer customers (4 planted expansions, 4 declines; seed 7) and one
    of 200 printers over a year, written into the stack's store; insights refreshed; a
    sales token; the first call's customer's API key."""
    now = datetime.now(UTC)
    end = now.replace(hour=0, minute=0, second=0, microsecond=0)
    await history.write(stack.store, history.generate("con", end, 24, 4, 4), now, rollups=False)
    big = history.generate("fleet", end, 1, 0, 0, days=365, devices=(200, 200), volume=100)
    await history.write(stack.store, big, now, rollups=False)
    async with httpx.AsyncClient(base_url=stack.api_url, headers=AUTH, timeout=300) as api:
        assert (await api.post("/v1/insights/refresh")).status_code == 200
        made = await api.post("/v1/staff-tokens", json={"name": "console", "role": "sales"})
        calls = (await api.get("/v1/insights/call-list", params={"limit": 20})).json()["items"]
        call = next(c for c in calls if c["quote_request"])
        cid = call["customer_id"]
        key = await api.post(f"/v1/customers/{cid}/api-keys", json={"name": "console"})
    return Desk(stack.api_url, made.json()["secret"], cid, key.json()["secret"], call)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the module."""
    async with chromium() as b:
        yield b


@pytest.fixture
async def admin(desk: Desk) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of the stack's API, to check what the browser did."""
    async with httpx.AsyncClient(base_url=desk.url, headers=AUTH, timeout=60) as api:
        yield api


async def _page(browser: Browser, desk: Desk, token: str) -> tuple[Page, Watch]:
    page, watch = await watched_page(browser, desk.url)
    await sign_in(page, desk.url, token)
    return page, watch


async def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _money(value: str, currency: str) -> str:
    """What the console shows for a money string: 2 places, half away from zero, grouped."""
    return f"{currency} {Decimal(value).quantize(Decimal('0.01'), ROUND_HALF_UP):,.2f}"


def _quantity(value: str) -> str:
    """A quantity as the console shows it: every digit, the whole part grouped."""
    whole, _, fraction = value.partition(".")
    return f"{int(whole):,}" + (f".{fraction}" if fraction else "")


class TestDeskToAcceptedQuote:
    """The inside-sales flow, end to end in the browser."""

    async def test_call_list_quote_sent_then_accepted(
        self, browser: Browser, desk: Desk, admin: httpx.AsyncClient
    ) -> None:
        """Sign in as sales: the call list is the API's, in its order, with its reasons;
        the first call's quote opens prefilled, is adjusted (valid 14 days), drafted, sent;
        the customer page lists it as sent; the customer's key accepts it: the API has the
        quote accepted and the customer subscribed to its plan."""
        page, watch = await _page(browser, desk, desk.sales)
        assert page.url.endswith("#/desk")
        await page.wait_for_selector("[data-testid='call-list']")
        api_calls = (await admin.get("/v1/insights/call-list", params={"limit": 20})).json()
        shown = await page.eval_on_selector_all(
            "[data-testid='call-list'] > li", "els => els.map(e => e.dataset.customer)"
        )
        assert shown == [c["customer_id"] for c in api_calls["items"]]
        first = page.locator(f"[data-testid='call-list'] > li[data-customer='{desk.customer_id}']")
        assert await first.locator("code.reason").all_inner_texts() == desk.call["reasons"]
        await page.wait_for_selector("[data-testid='customers-table'] tbody tr")
        await _shot(page, "desk")

        await first.locator("[data-testid='quote-link']").focus()
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#plan")
        request = desk.call["quote_request"]
        assert await page.input_value("#plan") == request["plan_id"]
        assert await page.input_value("#last-days") == str(request["basis"]["last_days"])
        await page.fill("#valid-days", "14")
        await page.click("text=Draft quote")
        await page.wait_for_selector("[data-testid='send-quote']")
        quote_id = (await page.inner_text("#quote-h")).removeprefix("Quote ").strip()
        drafted = (await admin.get(f"/v1/quotes/{quote_id}")).json()
        assert (drafted["status"], drafted["customer_id"]) == ("draft", desk.customer_id)
        assert drafted["plan_id"] == request["plan_id"]
        assert drafted["basis"] == {"last_days": request["basis"]["last_days"]}
        valid = datetime.fromisoformat(drafted["valid_until"]) - datetime.fromisoformat(
            drafted["created_at"]
        )
        assert valid == timedelta(days=14)
        total = await page.inner_text("[data-testid='quote-total']")
        assert total == _money(drafted["total"], drafted["currency"])
        await _shot(page, "quote")
        await page.click("[data-testid='send-quote']")
        await page.wait_for_selector("p[role='status']")
        assert (await admin.get(f"/v1/quotes/{quote_id}")).json()["status"] == "sent"

        await page.click(f"a[href='#/customers/{desk.customer_id}'] >> nth=0")
        await page.wait_for_selector(READY)
        await page.wait_for_selector(f"li[data-quote='{quote_id}'][data-status='sent']")
        await _shot(page, "customer")
        assert watch.problems == []

        own, own_watch = await _page(browser, desk, desk.key)
        assert own.url.endswith("#/me")
        await own.wait_for_selector(READY)
        await _shot(own, "own")
        await own.click(f"li[data-quote='{quote_id}'] [data-testid='accept-quote']")
        await own.wait_for_selector(f"li[data-quote='{quote_id}'][data-status='accepted']")
        accepted = (await admin.get(f"/v1/quotes/{quote_id}")).json()
        assert accepted["status"] == "accepted"
        subscription = await admin.get(f"/v1/customers/{desk.customer_id}/subscription")
        plans = [s["plan_id"] for s in subscription.json()["history"]]
        assert request["plan_id"] in plans
        assert own_watch.problems == []


class TestCharts:
    """The charts draw the API's numbers (read from the chart's data, not a picture)."""

    async def test_usage_and_projection(
        self, browser: Browser, desk: Desk, admin: httpx.AsyncClient
    ) -> None:
        """Days: this period's buckets are the API's day usage (none drawn after now), the
        previous period's the API's for the month before; the bill's totals are the
        preview's; the projection ends at the preview's projected quantity; months: the
        API's 12 months."""
        page, watch = await _page(browser, desk, desk.sales)
        base = f"/v1/customers/{desk.customer_id}"
        # The projection moves with the clock (the same usage over a longer elapsed part of
        # the period): what the page drew lies between the previews read before and after.
        early = (await admin.get(f"{base}/invoice-preview")).json()
        before = datetime.now(UTC)
        await page.goto(f"{desk.url}/console/#/customers/{desk.customer_id}")
        await page.wait_for_selector(READY)
        late = (await admin.get(f"{base}/invoice-preview")).json()
        start = datetime.fromisoformat(late["period_start"])
        end = datetime.fromisoformat(late["period_end"])
        window = {"meter": "pages_printed", "window": "day"}
        days = await admin.get(
            f"{base}/usage", params={**window, "from": format_time(start), "to": format_time(end)}
        )
        month_before = (start - timedelta(days=1)).replace(day=1)
        previous = await admin.get(
            f"{base}/usage",
            params={**window, "from": format_time(month_before), "to": format_time(start)},
        )
        chart = await page.evaluate("window.telemeterCharts.usage")
        series = days.json()["series"]
        assert chart["x"] == [datetime.fromisoformat(p["start"]).timestamp() for p in series]
        drawn = chart["series"][0]["values"]
        for point, value in zip(series, drawn, strict=True):
            if value is None:
                assert datetime.fromisoformat(point["start"]) > before
            else:
                assert value == float(point["value"])
        assert drawn[0] is not None
        earlier = [float(p["value"]) for p in previous.json()["series"]][: len(series)]
        assert chart["series"][1]["values"][: len(earlier)] == earlier
        total = await page.inner_text("[data-testid='usage-total']")
        assert _quantity(days.json()["total"]) in total
        bill = await page.inner_text("[data-testid='bill-total']")
        assert bill == _money(late["rating"]["total"], late["currency"])
        projected = await page.inner_text("[data-testid='bill-projected']")
        assert projected in {_money(x["projected"]["total"], x["currency"]) for x in (early, late)}
        ahead = await page.evaluate("window.telemeterCharts.projection")
        ends = [
            float(
                next(li for li in x["projected"]["lines"] if li["meter"] == "pages_printed")[
                    "quantity"
                ]
            )
            for x in (early, late)
        ]
        assert min(ends) <= ahead["series"][1]["values"][-1] <= max(ends)

        await page.check("input[name='grain'][value='month']")
        # polled from here: the page's policy forbids the eval a wait_for_function uses
        months = await wait_for(
            lambda: page.evaluate("window.telemeterCharts.usage"), lambda c: len(c["x"]) == 12
        )
        first = datetime.fromtimestamp(months["x"][0], UTC)
        by_month = await admin.get(
            f"{base}/usage",
            params={
                **window,
                "window": "month",
                "from": format_time(first),
                "to": format_time(end),
            },
        )
        assert months["series"][0]["values"] == [
            float(p["value"]) for p in by_month.json()["series"]
        ]
        assert watch.problems == []


class TestOps:
    """Ops replays a dead letter from the console."""

    async def test_replay_a_dead_letter(
        self,
        browser: Browser,
        desk: Desk,
        admin: httpx.AsyncClient,
        broker: LocalBroker,
        settings: Settings,
    ) -> None:
        """A reading of a meter the device's kind does not allow is dead-lettered; once
        the kind allows it, the admin clicks Replay: the letter is replayed and the
        reading counted once."""
        now = datetime.now(UTC)
        await admin.put("/v1/customers/con-ops", json={"name": "Ops BV"})
        await admin.put("/v1/meters/lamp_minutes", json={"unit": "min", "kind": "delta"})
        await admin.put("/v1/device-kinds/con-lamp", json={"meters": []})
        held = format_time(now - timedelta(hours=1))
        device = {"kind": "con-lamp", "customer_id": "con-ops", "assigned_from": held}
        assert (await admin.put("/v1/devices/con-lamp-1", json=device)).status_code == 200
        logins = await asyncio.to_thread(issue_logins, desk.url, ADMIN_TOKEN, ["con-lamp-1"])
        message = {
            "device_id": "con-lamp-1",
            "seq": 7,
            "sent_at": format_time(now),
            "readings": [{"meter": "lamp_minutes", "value": "3", "at": format_time(now)}],
        }
        topic = f"{settings.mqtt.topic_prefix}devices/con-lamp-1/telemetry"
        sent = [(topic, json.dumps(message).encode())]
        assert await asyncio.to_thread(publish_as, broker.endpoint(), logins, sent) == 1

        async def letters() -> list[dict[str, Any]]:
            r = await admin.get("/v1/dead-letters", params={"device_id": "con-lamp-1"})
            return list(r.json()["items"])

        [letter] = await wait_for(letters, lambda items: len(items) == 1)
        assert letter["reason"] == "meter_not_allowed"
        await admin.put("/v1/device-kinds/con-lamp", json={"meters": ["lamp_minutes"]})

        page, watch = await _page(browser, desk, ADMIN_TOKEN)
        await page.goto(f"{desk.url}/console/#/ops")
        row = page.locator(f"li[data-letter='{letter['id']}']")
        await row.wait_for()
        await page.wait_for_selector("[data-testid='devices'] tbody tr")
        await _shot(page, "ops")
        await row.locator("[data-testid='replay']").click()
        await page.wait_for_selector("p[role='status']:has-text('Replayed')")
        got = (await admin.get(f"/v1/dead-letters/{letter['id']}")).json()
        assert got["status"] == "replayed"
        window = {
            "meter": "lamp_minutes",
            "from": format_time(now - timedelta(hours=1)),
            "to": format_time(now + timedelta(hours=1)),
        }

        async def usage() -> dict[str, Any]:
            return dict((await admin.get("/v1/customers/con-ops/usage", params=window)).json())

        counted = await wait_for(usage, lambda u: u.get("readings") == 1)
        assert counted["total"] == "3"
        assert watch.problems == []


class TestAccess:
    """The console shows what the token may read, and nothing else."""

    async def test_a_customer_key_reads_its_own_only(self, browser: Browser, desk: Desk) -> None:
        """The key's console has its own view only; another customer's page is the API's
        403, shown as such."""
        page, watch = await _page(browser, desk, desk.key)
        assert await page.locator("header nav a").all_inner_texts() == ["My usage"]
        await page.goto(f"{desk.url}/console/#/customers/{BIG}")
        # each section asks on its own: the first refusal to arrive is enough
        alert = page.locator("[role='alert']").first
        await alert.wait_for()
        assert (await alert.inner_text()).startswith("403")
        # Chromium logs the refused request itself as a console error: that one is expected
        assert watch.problems
        assert all("status of 403" in p for p in watch.problems)

    async def test_sales_sees_no_ops_and_no_alerts(self, browser: Browser, desk: Desk) -> None:
        """A sales token: the desk, no ops; on a customer page alerts and orders are not
        asked for (admin only) and say so."""
        page, watch = await _page(browser, desk, desk.sales)
        assert await page.locator("header nav a").all_inner_texts() == ["Desk"]
        await page.goto(f"{desk.url}/console/#/customers/{desk.customer_id}")
        await page.wait_for_selector(READY)
        assert "This token may not read this." in await page.inner_text("main")
        assert not [u for u in watch.requests if "/v1/alerts" in u or "/v1/orders" in u]
        assert watch.problems == []

    async def test_a_wrong_token_is_refused(self, browser: Browser, desk: Desk) -> None:
        """A token the API does not know: the sign-in says so and stays."""
        page, watch = await watched_page(browser, desk.url)
        await page.goto(f"{desk.url}/console/")
        await page.fill("#token", "tms_not_a_token")
        await page.press("#token", "Enter")
        alert = page.locator("[role='alert']")
        await alert.wait_for()
        assert "invalid bearer token" in await alert.inner_text()
        assert "tms_not_a_token" not in await page.content()
        # the API's 401 is logged by Chromium as a failed resource: that one is expected
        assert all("401" in p for p in watch.problems)


class TestKeyboard:
    """From sign-in to a quote with the keyboard alone."""

    async def test_sign_in_and_open_a_quote(self, browser: Browser, desk: Desk) -> None:
        """The token field has focus; Enter signs in; Tab reaches the first call's quote
        link (past the skip link, the navigation and the refresh button); Enter opens it."""
        page, watch = await watched_page(browser, desk.url)
        await page.goto(f"{desk.url}/console/")
        await page.wait_for_selector("#token:focus")  # focused on its own: no click
        await page.keyboard.type(desk.sales)
        await page.keyboard.press("Enter")
        await page.wait_for_selector("[data-testid='quote-link']")
        for _ in range(40):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.dataset.testid === 'quote-link'"):
                break
        else:
            pytest.fail("Tab never reached a quote link")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#plan")
        assert "#/quote?" in page.url
        assert watch.problems == []


class TestWatch:
    """The watch fails a test on what it is there to catch (it can fail)."""

    async def test_external_request_and_script_error(self, browser: Browser, desk: Desk) -> None:
        """On the console a fetch to another origin is refused by the page's policy, and
        the refusal recorded; on a page without that policy the request itself is aborted
        and recorded; an uncaught error is recorded."""
        page, watch = await _page(browser, desk, desk.sales)
        await page.evaluate("fetch('http://198.51.100.7/beacon').catch(() => null)")
        await page.evaluate("setTimeout(() => { throw new Error('planted') }, 0)")
        found = await wait_for(lambda: _problems(watch), _both, timeout_s=10)
        assert any("Content Security Policy" in p and "198.51.100.7" in p for p in found)
        bare, bare_watch = await watched_page(browser, desk.url)
        await bare.goto(f"{desk.url}/healthz")
        await bare.evaluate("fetch('http://198.51.100.7/beacon').catch(() => null)")
        await wait_for(lambda: _problems(bare_watch), bool, timeout_s=10)
        assert "external request: http://198.51.100.7/beacon" in bare_watch.problems


async def _problems(watch: Watch) -> list[str]:
    return list(watch.problems)


def _both(problems: list[str]) -> bool:
    """The planted error and the refused fetch are both recorded."""
    error = any("javascript error" in p and "planted" in p for p in problems)
    return error and any("198.51.100.7" in p for p in problems)


class TestDocs:
    """``/docs`` works without internet."""

    async def test_swagger_ui_renders_offline(self, browser: Browser, desk: Desk) -> None:
        """Swagger UI draws the operations from files the API serves; nothing else loads."""
        page, watch = await watched_page(browser, desk.url)
        await page.goto(f"{desk.url}/docs")
        await page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
        assert await page.locator(".swagger-ui .opblock").count() > 50
        assert watch.problems == []


class TestLargeCustomer:
    """A customer with 200 devices and a year of history (its time: bench scenario 11)."""

    async def test_page_becomes_ready(self, browser: Browser, desk: Desk) -> None:
        """Every section draws: 200 devices in the breakdown, the statements; the page's
        own measure of its readiness is recorded, not asserted (no timed assertions)."""
        page, watch = await _page(browser, desk, desk.sales)
        ms = await ready_ms(page, desk.url, f"/customers/{BIG}")
        assert await page.locator("[data-testid='device-breakdown'] tbody tr").count() == 200
        # its statements section is drawn (how many the closer has closed by now varies)
        assert await page.locator("#statements").count() == 1
        await _shot(page, "customer-200-devices")
        (RUN_DIR / "console-ready.json").write_text(json.dumps({"customer": BIG, "ms": ms}))
        assert watch.problems == []
