"""The webhooks demo (``make demo``): a receiver on a local port, subscribed through the
API before the corrections demo, that verifies every request with the ``standardwebhooks``
package as a customer's billing system would; after the corrections it reports what came:
the statement closed and its restatements, each verified, each once after deduplication
on ``webhook-id``."""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class _Inbox:
    secret: str = ""
    ids: list[str] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)  # id -> first time.time()
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


WANTED = {
    "statement.closed": 1,
    "statement.restated": 2,
    "alert.triggered": 2,
    "alert.resolved": 1,
    "order.created": 1,
    "quote.sent": 1,
    "quote.accepted": 1,
}
"""What the corrections demo makes (its month closed, restated twice), the automation
demo (two alerts, one resolved, one replenishment order) and the sales demo (a quote sent
and accepted)."""


DESCRIPTION = "make demo's receiver"


def _disable_left_over(http: httpx.Client) -> None:
    """Disable the enabled receivers of earlier demos that were killed before they closed
    theirs: the sender would retry every event on each for 5 days."""
    params: dict[str, Any] = {"limit": 1000}
    while True:
        page = http.get("/v1/webhook-endpoints", params=params)
        page.raise_for_status()
        items = page.json()["items"]
        for e in items:
            if e["description"] == DESCRIPTION and e["status"] == "enabled":
                spec = {k: e[k] for k in ("url", "description", "event_types")}
                path = f"/v1/webhook-endpoints/{e['endpoint_id']}"
                http.put(path, json={**spec, "enabled": False}).raise_for_status()
        if not page.json()["has_more"]:
            return
        params["starting_after"] = items[-1]["endpoint_id"]


@dataclass(frozen=True, slots=True)
class Delivered:
    """What the receiver got."""

    url: str
    endpoint_id: str
    by_type: dict[str, int]
    requests: int
    unique: int
    refused: int

    @property
    def exact(self) -> bool:
        """Every request verified, and the demos' events came: the statement closed and
        its two restatements (the late pages, the void), the two alerts and the toner's
        resolution, the order, the quote sent and accepted."""
        return self.refused == 0 and all(self.by_type.get(t, 0) >= n for t, n in WANTED.items())


class Receiver:
    """A local HTTP receiver and its endpoint in the API."""

    def __init__(self, api_url: str, token: str) -> None:
        self._inbox = _Inbox()
        inbox = self._inbox

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                content = self.rfile.read(int(self.headers.get("content-length", 0)))
                with inbox.lock:
                    try:
                        data: Any = Webhook(inbox.secret).verify(content, dict(self.headers))
                        inbox.ids.append(self.headers["webhook-id"])
                        inbox.types[self.headers["webhook-id"]] = data["type"]
                        inbox.arrived.setdefault(self.headers["webhook-id"], time.time())
                    except WebhookVerificationError:
                        inbox.refused += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/telemeter-hooks"
        self._api_url = api_url
        self._headers = {"Authorization": f"Bearer {token}"}
        self._closed = False
        with httpx.Client(base_url=api_url, headers=self._headers) as c:
            _disable_left_over(c)
            made = c.post("/v1/webhook-endpoints", json=self._spec())
            made.raise_for_status()
        self._inbox.secret = made.json()["secret"]
        self.endpoint_id = made.json()["endpoint"]["endpoint_id"]

    def _spec(self, enabled: bool = True) -> dict[str, Any]:
        """Only the demos' event types: the simulated fleet's own (replacement.suggested,
        device.silent, ...) are not the receiver's business."""
        types = sorted(WANTED)
        return {
            "url": self.url,
            "description": DESCRIPTION,
            "event_types": types,
            "enabled": enabled,
        }

    def collect(self, timeout_s: float = 30) -> Delivered:
        """Wait until the WANTED events came (or the timeout); stop serving."""
        deadline = time.monotonic() + timeout_s
        while not self._report().exact and time.monotonic() < deadline:
            time.sleep(0.1)
        self.close()
        return self._report()

    def close(self) -> None:
        """Stop serving and disable the endpoint (also when a demo before ``collect``
        failed): a later demo's events are not tried on a receiver gone."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        with httpx.Client(base_url=self._api_url, headers=self._headers) as c:
            path = f"/v1/webhook-endpoints/{self.endpoint_id}"
            c.put(path, json=self._spec(enabled=False)).raise_for_status()

    def arrived(self, event_id: str) -> float | None:
        """When the event first arrived verified (``time.time()``), if it has."""
        with self._inbox.lock:
            return self._inbox.arrived.get(event_id)

    def _report(self) -> Delivered:
        with self._inbox.lock:
            by_type: dict[str, int] = {}
            for t in self._inbox.types.values():
                by_type[t] = by_type.get(t, 0) + 1
            return Delivered(
                url=self.url,
                endpoint_id=self.endpoint_id,
                by_type=by_type,
                requests=len(self._inbox.ids),
                unique=len(set(self._inbox.ids)),
                refused=self._inbox.refused,
            )


def summary(d: Delivered) -> str:
    """One line for the report."""
    kinds = ", ".join(f"{n} {t}" for t, n in sorted(d.by_type.items())) or "nothing"
    return (
        f"{d.unique} events to {d.url} ({kinds}); {d.requests} requests, every signature "
        f"verified with standardwebhooks ({d.refused} refused); endpoint {d.endpoint_id}"
    )
