"""The console demo (``make demo``, last): the console the API serves, opened in Debian's
Chromium (``devices/browser.py``) as a seller and as ops would: the call list must show the
API's calls in the API's order, the leading customer's page must draw every section, the
ops page its pipeline numbers, and no page may log an error or load anything from outside
the API's origin."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from devices.browser import chromium, ready_ms, sign_in, watched_page
from devices.corrections import ok


@dataclass(frozen=True, slots=True)
class ConsoleLook:
    """What the browser saw."""

    url: str
    calls_api: list[str]
    calls_shown: list[str]
    customer_id: str
    ready_ms: float
    problems: list[str]

    @property
    def exact(self) -> bool:
        """The call list is the API's and no page had a problem."""
        return self.calls_shown == self.calls_api and not self.problems


async def run(api_url: str, admin_token: str) -> ConsoleLook:
    """A sales token; the desk, the leading call's customer page and ops in Chromium."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=admin, timeout=60) as http:
        made = ok(await http.post("/v1/staff-tokens", json={"name": "console", "role": "sales"}))
        sales = str(made.json()["secret"])
        listed = ok(await http.get("/v1/insights/call-list", params={"limit": 20})).json()
    calls = [c["customer_id"] for c in listed["items"]]
    async with chromium() as browser:
        page, watch = await watched_page(browser, api_url)
        await sign_in(page, api_url, sales)
        await page.wait_for_selector("[data-testid='call-list'], #calls p")
        shown = await page.eval_on_selector_all(
            "[data-testid='call-list'] > li", "els => els.map(e => e.dataset.customer)"
        )
        leading = calls[0] if calls else ""
        ms = await ready_ms(page, api_url, f"/customers/{leading}") if leading else 0.0
        ops, ops_watch = await watched_page(browser, api_url)
        await sign_in(ops, api_url, admin_token)
        await ops.goto(f"{api_url}/console/#/ops")
        await ops.wait_for_selector("[data-testid='pipeline']")
        await ops.wait_for_selector("[data-testid='devices'] tbody tr")
    problems = watch.problems + ops_watch.problems
    return ConsoleLook(f"{api_url}/console/", calls, list(shown), leading, ms, problems)
