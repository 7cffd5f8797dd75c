"""The inside-sales demo (``make demo``, after the automation demo): a ``sales`` staff
token reads the printer customer's insights -- each figure with its formula and inputs,
the health score as points per factor -- drafts a quote on its last 30 days and sends it;
the customer accepts it with its own API key, and the order is its subscription."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from devices.corrections import ok


@dataclass(frozen=True, slots=True)
class Sales:
    """What the demo saw."""

    customer_id: str
    health: dict[str, Any]
    figures: dict[str, dict[str, Any]]  # the first meter's
    money: dict[str, dict[str, Any]]
    quote_id: str
    statuses: list[str]  # the quote's, as it went
    subscription_plan: str | None

    @property
    def exact(self) -> bool:
        """The points add up to the score; the quote went draft -> sent -> accepted and
        became the subscription."""
        points = sum(Decimal(p) for p in self.health["points"].values())
        return (
            points == Decimal(self.health["score"])
            and self.statuses == ["draft", "sent", "accepted"]
            and self.subscription_plan is not None
        )


def run(api_url: str, admin_token: str, customer_id: str, plan_id: str) -> Sales:
    """The demo against the API for ``customer_id`` (on ``plan_id``)."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=api_url, headers=admin, timeout=30) as http:
        made = ok(http.post("/v1/staff-tokens", json={"name": "demo desk", "role": "sales"}))
        key = ok(http.post(f"/v1/customers/{customer_id}/api-keys", json={"name": "demo"}))
    sales = {"Authorization": f"Bearer {made.json()['secret']}"}
    mine = {"Authorization": f"Bearer {key.json()['secret']}"}
    with httpx.Client(base_url=api_url, headers=sales, timeout=30) as http:
        insights = ok(http.get(f"/v1/customers/{customer_id}/insights")).json()
        body = {"customer_id": customer_id, "plan_id": plan_id, "basis": {"last_days": 30}}
        quote = ok(http.post("/v1/quotes", json=body)).json()
        sent = ok(http.post(f"/v1/quotes/{quote['quote_id']}/send")).json()
    with httpx.Client(base_url=api_url, headers=mine, timeout=30) as http:
        order = ok(http.post(f"/v1/quotes/{quote['quote_id']}/accept")).json()
    meters = insights["meters"]
    return Sales(
        customer_id=customer_id,
        health=insights["health"],
        figures=meters[0]["figures"] if meters else {},
        money=insights["money"],
        quote_id=quote["quote_id"],
        statuses=[quote["status"], sent["status"], order["quote"]["status"]],
        subscription_plan=order["subscription"]["plan_id"],
    )
