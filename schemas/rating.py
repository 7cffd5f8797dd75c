"""What a rating says a customer owes: ``TierLine``, ``ChargeLine`` and ``Rating``, the
results of the pricing engine (``rating/``), as values that quotes, the store and the API
pass around.

They keep Decimals in Python; in JSON quantities and prices are plain decimal strings
without trailing zeros (``"6.5"``) and amounts keep the currency's minor unit (``"41.50"``,
JPY ``"150"``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer

from schemas.telemetry import format_decimal


def format_amount(value: Decimal) -> str:
    """Render a rounded amount in plain notation, keeping its minor unit ("39.00")."""
    text = format(value, "f")
    return text.removeprefix("-") if value.is_zero() else text


_DecimalString = PlainSerializer(format_decimal, return_type=str, when_used="json")
# What the results report: exact quantities and prices, and amounts rounded to minor units.
Quantity = Annotated[Decimal, _DecimalString]
Amount = Annotated[Decimal, PlainSerializer(format_amount, return_type=str, when_used="json")]

ChargeModel = Literal["per_unit", "graduated", "volume", "package"]


class TierLine(BaseModel):
    """The part of a charge priced in one tier: ``units`` in the range
    (``from_unit``, ``to_unit``] (``to_unit`` None: unbounded) at ``unit_price``, plus
    ``flat_fee``; ``amount`` is that, rounded. For ``package`` charges ``units`` counts
    packages and ``unit_price`` is the package price."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_unit: Quantity
    to_unit: Quantity | None
    units: Quantity
    unit_price: Quantity
    flat_fee: Quantity
    amount: Amount


class ChargeLine(BaseModel):
    """One meter's charge in a period. ``quantity == included + billable`` (``included``
    is the part of the allowance used), ``tiers`` lists the tiers that priced at least one
    unit, and ``amount == sum(tier.amount for tier in tiers) + adjustment``, where
    ``adjustment`` is what the charge's minimum adds (> 0) or maximum takes off (< 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    meter: str
    model: ChargeModel
    quantity: Quantity
    included: Quantity
    billable: Quantity
    tiers: list[TierLine]
    adjustment: Amount
    amount: Amount


class Rating(BaseModel):
    """What a customer owes for one billing period, exactly additive:
    ``usage_total == sum(line.amount)``, ``subtotal == base_fee + usage_total`` and
    ``total == subtotal + minimum_true_up``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str
    lines: list[ChargeLine]
    base_fee: Amount
    usage_total: Amount
    minimum_true_up: Amount
    subtotal: Amount
    total: Amount
