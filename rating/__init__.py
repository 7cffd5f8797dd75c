"""The pure pricing engine: plans (per-unit, graduated, volume and package charges,
included allowances, per-charge minimum/maximum, base fee, minimum commitment) and the
functions that turn a period's usage into an itemised, exactly additive amount.

No I/O and no clock: callers fetch usage and decide the period. Layout:
``models`` (plans and results), ``engine`` (``price_charge``, ``rate``,
``rate_segments``), ``currency`` (minor units, half-even rounding), ``errors``.
"""

from rating.currency import minor_unit, round_money
from rating.engine import price_charge, rate, rate_segments
from rating.errors import (
    CurrencyMismatch,
    InvalidFraction,
    InvalidQuantity,
    InvalidSegments,
    RatingError,
)
from rating.models import (
    BillingPeriod,
    Charge,
    ChargeLine,
    GraduatedCharge,
    PackageCharge,
    PerUnitCharge,
    PlanSpec,
    Rating,
    Tier,
    TierLine,
    VolumeCharge,
)

__all__ = [
    "BillingPeriod",
    "Charge",
    "ChargeLine",
    "CurrencyMismatch",
    "GraduatedCharge",
    "InvalidFraction",
    "InvalidQuantity",
    "InvalidSegments",
    "PackageCharge",
    "PerUnitCharge",
    "PlanSpec",
    "Rating",
    "RatingError",
    "Tier",
    "TierLine",
    "VolumeCharge",
    "minor_unit",
    "price_charge",
    "rate",
    "rate_segments",
    "round_money",
]
