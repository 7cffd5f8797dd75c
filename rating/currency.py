"""Currencies' minor units and the one rounding rule of the engine.

Every amount the engine reports is rounded half-even (banker's rounding) to the
currency's minor unit: 2 decimals unless the small table below says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from types import MappingProxyType
from typing import Final

from schemas.telemetry import EXACT

DEFAULT_MINOR_UNIT: Final = 2
# ISO 4217 exponents that differ from 2, for currencies we expect to bill in. A currency
# not listed (EUR, USD, GBP, CHF, ...) has 2 decimals.
MINOR_UNITS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "JPY": 0,
        "KRW": 0,
        "ISK": 0,
        "CLP": 0,
        "VND": 0,
        "KWD": 3,
        "BHD": 3,
        "JOD": 3,
        "OMR": 3,
        "TND": 3,
    }
)


def minor_unit(currency: str) -> int:
    """The number of decimals of the currency's minor unit (EUR 2, JPY 0, KWD 3)."""
    return MINOR_UNITS.get(currency, DEFAULT_MINOR_UNIT)


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round half-even to the currency's minor unit (EUR 0.125 -> 0.12, 0.135 -> 0.14)."""
    with localcontext(EXACT):
        quantum = Decimal(1).scaleb(-minor_unit(currency))
        return amount.quantize(quantum, rounding=ROUND_HALF_EVEN)
