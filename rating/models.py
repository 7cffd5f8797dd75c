"""Plans (what a customer pays for) and ratings (what they pay), as pydantic models.

A plan prices each meter with one charge; in JSON every number is a decimal string::

    {"name": "Print Pro", "currency": "EUR", "billing_period": "month",
     "base_fee": "49.00", "minimum_commitment": "100.00",
     "charges": [
       {"model": "graduated", "meter": "pages_printed", "included": "500",
        "tiers": [{"up_to": "5", "unit_price": "7.00"},
                  {"up_to": "10", "unit_price": "6.50"},
                  {"up_to": null, "unit_price": "6.00", "flat_fee": "0"}]},
       {"model": "package", "meter": "door_cycles", "package_size": "1000",
        "package_price": "2.50", "maximum": "40.00"}]}

The results (``TierLine``, ``ChargeLine``, ``Rating``) are values the API, quotes and the
store pass around, so they live in ``schemas/rating.py``; they are importable from here too.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from schemas.inputs import ExactDecimal
from schemas.insights import check_weights
from schemas.rating import (
    ChargeLine,
    ChargeModel,
    Rating,
    TierLine,
    format_amount,
)
from schemas.telemetry import VALUE_MAX_ABS, MeterName, format_decimal

ZERO = Decimal(0)
__all__ = [
    "ZERO",
    "BillingPeriod",
    "ChargeLine",
    "ChargeModel",
    "GraduatedCharge",
    "PackageCharge",
    "PerUnitCharge",
    "PlanSpec",
    "Rating",
    "Tier",
    "TierLine",
    "VolumeCharge",
    "check_tiers",
    "format_amount",
]


_DecimalString = PlainSerializer(format_decimal, return_type=str, when_used="json")
# Quantities and prices of a plan: decimal strings, non-negative, within the store's
# Decimal(38, 9) (at most 29 digits before the point and 9 after it), so every product and
# sum the engine forms stays exact in an 80-digit context and renders in a few dozen digits.
NonNegative = Annotated[ExactDecimal, Field(ge=0, lt=VALUE_MAX_ABS), _DecimalString]
Positive = Annotated[ExactDecimal, Field(gt=0, lt=VALUE_MAX_ABS), _DecimalString]


class BillingPeriod(StrEnum):
    """How often a plan's base fee and minimum commitment recur."""

    MONTH = "month"
    YEAR = "year"


class Tier(BaseModel):
    """One price tier: the units above the previous tier's ``up_to`` up to this one's
    (inclusive); ``up_to`` null means no upper bound (only the last tier)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    up_to: Positive | None
    unit_price: NonNegative
    flat_fee: NonNegative = ZERO


class _ChargeBase(BaseModel):
    """What every charge has: its meter, a free allowance and bounds on its amount."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    meter: MeterName
    included: Annotated[
        NonNegative, Field(description="free units, taken off the quantity before pricing")
    ] = ZERO
    minimum: Annotated[
        NonNegative | None, Field(description="the least this charge costs in a period")
    ] = None
    maximum: Annotated[
        NonNegative | None, Field(description="the most this charge costs in a period")
    ] = None

    @model_validator(mode="after")
    def _minimum_not_above_maximum(self) -> Self:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(
                f"minimum {format_decimal(self.minimum)} is above maximum "
                f"{format_decimal(self.maximum)}; lower the minimum or raise the maximum"
            )
        return self


def check_tiers(tiers: list[Tier]) -> list[Tier]:
    """Tiers ascend strictly by ``up_to`` and end with one open-ended tier, so every
    quantity falls in exactly one tier."""
    if not tiers:
        raise ValueError("at least one tier is required; the last has up_to null")
    *bounded, last = tiers
    if last.up_to is not None:
        raise ValueError(
            "the last tier must be open-ended (up_to null) so that every quantity has a price"
        )
    previous = ZERO
    for index, tier in enumerate(bounded):
        if tier.up_to is None:
            raise ValueError(f"only the last tier may have up_to null, not tier {index}")
        if tier.up_to <= previous:
            raise ValueError(
                f"tiers must ascend by up_to: tier {index} has up_to "
                f"{format_decimal(tier.up_to)}, not above {format_decimal(previous)}"
            )
        previous = tier.up_to
    return tiers


class PerUnitCharge(_ChargeBase):
    """Every billable unit at ``unit_price``."""

    model: Literal["per_unit"]
    unit_price: NonNegative


class _TieredCharge(_ChargeBase):
    tiers: list[Tier]

    @model_validator(mode="after")
    def _valid_tiers(self) -> Self:
        check_tiers(self.tiers)
        return self


class GraduatedCharge(_TieredCharge):
    """Each billable unit at the price of the tier it falls in; a tier's flat fee is
    charged when at least one unit falls in it."""

    model: Literal["graduated"]


class VolumeCharge(_TieredCharge):
    """All billable units at the price of the tier the billable total falls in, plus that
    tier's flat fee."""

    model: Literal["volume"]


class PackageCharge(_ChargeBase):
    """``package_price`` per started package of ``package_size`` billable units."""

    model: Literal["package"]
    package_size: Positive
    package_price: NonNegative


Charge = Annotated[
    PerUnitCharge | GraduatedCharge | VolumeCharge | PackageCharge,
    Field(discriminator="model"),
]


class PlanSpec(BaseModel):
    """A price plan: a currency, a billing period, optional recurring fees and one charge
    per meter. ``minimum_commitment`` is compared with the base fee plus all charges."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
    billing_period: BillingPeriod
    base_fee: NonNegative | None = None
    minimum_commitment: NonNegative | None = None
    charges: list[Charge]
    health_weights: Annotated[
        dict[str, NonNegative] | None,
        Field(
            description="the health score's weights for this plan's customers, each factor "
            "once, summing to 100 (default: usage_trend 30, adoption 25, silent_devices 15, "
            "included_utilisation 15, commitment_use 15)",
            examples=[
                {
                    "usage_trend": "40",
                    "adoption": "20",
                    "silent_devices": "10",
                    "included_utilisation": "15",
                    "commitment_use": "15",
                }
            ],
        ),
    ] = None

    @model_validator(mode="after")
    def _weights(self) -> Self:
        if self.health_weights is not None:
            check_weights(self.health_weights)
        return self

    @model_validator(mode="after")
    def _one_charge_per_meter(self) -> Self:
        counts = Counter(charge.meter for charge in self.charges)
        duplicates = sorted(meter for meter, count in counts.items() if count > 1)
        if duplicates:
            raise ValueError(
                f"one charge per meter: {', '.join(duplicates)} priced more than once; "
                "merge them into one charge (e.g. graduated tiers)"
            )
        return self
