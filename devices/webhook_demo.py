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
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


WANTED = {
    "statement.closed": 1,
    "statement.restated": 2,
    "alert.triggered": 2,
    "alert.resolved": 1,
    "order.created": 1,
}
"""What the corrections demo makes (its month closed, restated twice) and the automation
demo (two alerts, one resolved, one replenishment order)."""


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
        resolution."""
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
                    except WebhookVerificationError:
                        inbox.refused += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/telemeter-hooks"
        spec = {"url": self.url, "description": "make demo's receiver"}
        self._api_url = api_url
        self._headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=api_url, headers=self._headers) as c:
            made = c.post("/v1/webhook-endpoints", json=spec)
            made.raise_for_status()
        self._inbox.secret = made.json()["secret"]
        self.endpoint_id = made.json()["endpoint"]["endpoint_id"]

    def collect(self, timeout_s: float = 30) -> Delivered:
        """Wait until the WANTED events came (or the timeout); stop serving."""
        deadline = time.monotonic() + timeout_s
        while not self._report().exact and time.monotonic() < deadline:
            time.sleep(0.1)
        self._server.shutdown()
        # Disabled once done: a later demo's events are not tried on a receiver gone.
        spec = {"url": self.url, "description": "make demo's receiver", "enabled": False}
        with httpx.Client(base_url=self._api_url, headers=self._headers) as c:
            c.put(f"/v1/webhook-endpoints/{self.endpoint_id}", json=spec).raise_for_status()
        return self._report()

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
