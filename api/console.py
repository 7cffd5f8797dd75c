"""The web console at ``/console``: the files ``make install`` built into ``console/dist``
(``console/``: a Preact + uPlot app built with Vite), served by the API process itself, so
there is no second server to run and nothing loads from anywhere but the API's origin.

The console is static: it signs in with a token the user types and reads the public API
with it (``console/src/api.ts``), so it can show nothing the token may not read. Its pages
are public, as ``/docs`` is; every ``/v1`` call they make is authenticated. A Content
Security Policy lets the page reach its own origin only (scripts, styles, images, fetches),
and forbids framing it."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

DIST = Path(__file__).resolve().parents[1] / "console" / "dist"
PATH = "/console"
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MISSING = """<!doctype html><title>Telemeter console</title>
<h1>The console is not built</h1>
<p>Run <code>make install</code> (it builds <code>console/dist</code> with npm from
<code>console/package-lock.json</code>) and restart the API.</p>"""


def install(app: FastAPI, dist: Path = DIST) -> None:
    """Serve ``dist`` at ``/console`` (its ``index.html`` at ``/console/``; the hashed
    assets, cached for good, at ``/console/assets``)."""

    @app.get(PATH, include_in_schema=False)
    async def console_root() -> Response:
        return RedirectResponse(f"{PATH}/", status_code=308)

    @app.get(f"{PATH}/", include_in_schema=False)
    async def console_index() -> Response:
        index = dist / "index.html"
        if not index.is_file():
            return HTMLResponse(MISSING, status_code=503, headers=HEADERS)
        return HTMLResponse(index.read_text(encoding="utf-8"), headers=HEADERS)

    assets = dist / "assets"
    app.mount(
        f"{PATH}/assets",
        StaticFiles(directory=assets, check_dir=False),
        name="console-assets",
    )
