"""Builders of charges and plans for the rating tests, from short decimal strings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter

from rating import Charge, PlanSpec, price_charge

CHARGE: TypeAdapter[Charge] = TypeAdapter(Charge)

# The worked example: units 1-5 at 7.00, 6-10 at 6.50, 11 and up at 6.00.
WORKED_TIERS: list[dict[str, Any]] = [
    {"up_to": "5", "unit_price": "7.00"},
    {"up_to": "10", "unit_price": "6.50"},
    {"up_to": None, "unit_price": "6.00"},
]


def tiers(*rows: tuple[str | None, str] | tuple[str | None, str, str]) -> list[dict[str, Any]]:
    """Tier dicts from (up_to, unit_price[, flat_fee]) rows."""
    return [
        {"up_to": row[0], "unit_price": row[1], **({"flat_fee": row[2]} if len(row) == 3 else {})}
        for row in rows
    ]


def charge_spec(model: str, meter: str = "pages_printed", **fields: Any) -> dict[str, Any]:
    """The JSON of a charge of ``model`` for ``meter`` with the given fields."""
    return {"model": model, "meter": meter, **fields}


def charge(model: str, meter: str = "pages_printed", **fields: Any) -> Charge:
    """A validated charge of ``model`` for ``meter`` with the given fields."""
    return CHARGE.validate_python(charge_spec(model, meter, **fields))


def plan(*charges: dict[str, Any], currency: str = "EUR", **fields: Any) -> PlanSpec:
    """A validated monthly plan with the given charge dicts and top-level fields."""
    return PlanSpec.model_validate(
        {
            "name": "Test plan",
            "currency": currency,
            "billing_period": "month",
            "charges": list(charges),
            **fields,
        }
    )


def amount(charge: Charge, quantity: str | Decimal, currency: str = "EUR") -> Decimal:
    """The amount of one charge for a quantity."""
    return price_charge(charge, Decimal(quantity), currency).amount
