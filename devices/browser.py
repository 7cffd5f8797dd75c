"""The console in a real browser: Debian's Chromium (``/usr/bin/chromium``; Playwright's own
browser downloads do not work offline) driven by Playwright, for the demo, the bench
(scenario 11) and the browser tests.

Every page opened here is watched (:class:`Watch`): a JavaScript error, an error logged to
the console, or a request to anywhere but the API's origin is a problem, kept in
``Watch.problems`` (external requests are also aborted, so nothing waits on the network)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.async_api import Browser, ConsoleMessage, Page, Request, Route, async_playwright

CHROMIUM = os.environ.get("TELEMETER_CHROMIUM", "/usr/bin/chromium")
# The flags ../shared/recipes/browser-tests.md found to work as root on these machines;
# without the background-networking ones Chromium keeps trying to reach the internet.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}
READY = "[data-ready='true']"


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless system Chromium."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Watch:
    """What went wrong on a page: errors and requests outside ``origin``."""

    origin: str
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error: {message.text}")

    def _page_error(self, error: Exception) -> None:
        self.problems.append(f"javascript error: {error}")

    def _request(self, request: Request) -> None:
        self.requests.append(request.url)

    async def _route(self, route: Route) -> None:
        url = route.request.url
        if _origin(url) == self.origin or url.startswith(("data:", "blob:", "about:")):
            await route.continue_()
        else:
            self.problems.append(f"external request: {url}")
            await route.abort()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def watched_page(browser: Browser, base_url: str) -> tuple[Page, Watch]:
    """A new page in a fresh context (its own sessionStorage), watched."""
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    watch = Watch(_origin(base_url))
    page.on("console", watch._console)
    page.on("pageerror", watch._page_error)
    page.on("request", watch._request)
    await context.route("**/*", watch._route)
    return page, watch


async def sign_in(page: Page, base_url: str, token: str) -> None:
    """Open the console and sign in with ``token`` (typed, as a person does)."""
    await page.goto(f"{base_url}/console/")
    await page.fill("#token", token)
    await page.press("#token", "Enter")
    await page.wait_for_selector("[data-testid='who']")


async def ready_ms(page: Page, base_url: str, route: str) -> float:
    """Load the console at ``#route`` afresh (a full page load, signed in already) and wait
    until every section of it has its data drawn (``data-ready``); the milliseconds from
    the start of the navigation, as the page itself measured them."""
    await page.goto("about:blank")
    await page.goto(f"{base_url}/console/#{route}")
    await page.wait_for_selector(READY, timeout=60_000)
    ms = await page.evaluate("window.telemeterReady.ms")
    return float(ms)
