"""The pricing engine: a plan and a period's usage in, an itemised amount out.

Pure functions: no I/O, no clock. The caller supplies the usage per meter (for example
from the usage API) and, for a partial period, the share of the period that was covered.

How one charge is priced (``price_charge``):

1. ``included`` units are taken off the quantity first (never below zero);
2. the charge's model prices the remaining billable quantity, tier by tier;
3. the amount is clamped to the charge's ``minimum`` / ``maximum``, if any.

How a period is rated (``rate``): the charges' amounts, plus the base fee, make the
subtotal; when that is below the minimum commitment a true-up line makes up the
difference. ``fee_fraction`` prorates the base fee and the minimum commitment (not usage)
for a partial period.

Rounding, so that totals add up exactly: every amount is rounded half-even to the
currency's minor unit once, where it is formed -- each tier line (units x price + flat
fee), the prorated base fee and minimum commitment, and a charge's minimum or maximum.
Everything above that is a sum of rounded amounts, never re-rounded: a charge's amount is
the sum of its rounded tier amounts (plus its min/max adjustment), the usage total the sum
of the charges' amounts, and so on. An invoice that prints the lines therefore adds up to
the cent. Arithmetic runs in an 80-digit context, so nothing but those roundings is ever
inexact (quantities and prices are below 1e29).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, localcontext

from rating.currency import round_money
from rating.errors import CurrencyMismatch, InvalidFraction, InvalidQuantity, InvalidSegments
from rating.models import (
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
from schemas.telemetry import EXACT, VALUE_MAX_ABS, format_decimal

ZERO = Decimal(0)
ONE = Decimal(1)
# Shares of a period are usually durations divided by the period's length, rounded at the
# context's precision, so three shares of exactly a third each may sum to 1 + 1e-28. Allow
# that much; a real overlap (two shares of 1) is far larger.
SHARE_SUM_TOLERANCE = Decimal("1e-9")


def price_charge(charge: Charge, quantity: Decimal, currency: str) -> ChargeLine:
    """Price one meter's quantity for a period under ``charge``, in ``currency``.

    Raises InvalidQuantity for a negative, non-finite or out-of-range quantity.
    """
    _check_quantity(charge.meter, quantity)
    with localcontext(EXACT):
        included = min(charge.included, quantity)
        billable = quantity - included
        tiers = _price_billable(charge, billable, currency)
        usage = round_money(_total(tier.amount for tier in tiers), currency)
        amount = usage
        if charge.minimum is not None:
            amount = max(amount, round_money(charge.minimum, currency))
        if charge.maximum is not None:
            amount = min(amount, round_money(charge.maximum, currency))
        return ChargeLine(
            meter=charge.meter,
            model=charge.model,
            quantity=quantity,
            included=included,
            billable=billable,
            tiers=tiers,
            adjustment=amount - usage,
            amount=amount,
        )


def rate(plan: PlanSpec, quantities: Mapping[str, Decimal], fee_fraction: Decimal = ONE) -> Rating:
    """Rate one billing period (or the ``fee_fraction`` of it that was covered) of ``plan``.

    ``quantities`` maps meter names to the period's usage; a meter the plan prices but
    that is missing counts 0, and meters the plan does not price are ignored (and not
    checked: a gauge nobody pays for may well be negative). ``fee_fraction`` in [0, 1]
    prorates the base fee and the minimum commitment, each rounded on its own.

    Raises InvalidQuantity for a bad quantity of a priced meter and InvalidFraction for a
    fee fraction outside [0, 1].
    """
    _check_fraction("fee_fraction", fee_fraction)
    currency = plan.currency
    with localcontext(EXACT):
        lines = [
            price_charge(charge, quantities.get(charge.meter, ZERO), currency)
            for charge in plan.charges
        ]
        base_fee = _prorate(plan.base_fee, fee_fraction, currency)
        commitment = _prorate(plan.minimum_commitment, fee_fraction, currency)
        usage_total = round_money(_total(line.amount for line in lines), currency)
        subtotal = base_fee + usage_total
        true_up = max(commitment - subtotal, round_money(ZERO, currency))
        return Rating(
            currency=currency,
            lines=lines,
            base_fee=base_fee,
            usage_total=usage_total,
            minimum_true_up=true_up,
            subtotal=subtotal,
            total=subtotal + true_up,
        )


def rate_segments(segments: Sequence[tuple[PlanSpec, Mapping[str, Decimal], Decimal]]) -> Rating:
    """Rate a billing period in which the plan changed: one segment per plan in force.

    Each segment is ``(plan, usage, share)``: the plan, the usage whose reading time falls
    in the segment, and the segment's share of the period's time. Each segment is rated on
    its own, as ``rate(plan, usage, share)``, and the results are added up:

    - base fee and minimum commitment are prorated by time, per segment, and each
      segment's commitment is trued up against that segment's own base fee and charges
      (usage under one plan does not count towards another plan's commitment);
    - usage is priced per segment on that segment's quantities only, so tiers and
      included allowances start again from zero in every segment. That is the simple,
      explainable choice -- "under plan B you used 12 pages" -- at the price that a
      customer who stays on one plan and one who switches to an identical plan may pay
      differently; callers that want tiers to continue across segments should rate the
      period as one segment instead;
    - the lines of all segments are listed, in segment order (a meter may appear once
      per segment).

    Raises InvalidSegments for no segments or shares summing above 1, CurrencyMismatch
    when the plans' currencies differ, and what ``rate`` raises.
    """
    if not segments:
        raise InvalidSegments("at least one segment (plan, usage, share) is required")
    currency = segments[0][0].currency
    currencies = sorted({plan.currency for plan, _, _ in segments})
    if len(currencies) > 1:
        raise CurrencyMismatch(
            f"one period is billed in one currency, but the segments' plans use "
            f"{', '.join(currencies)}; rate them as separate periods or use one currency"
        )
    for index, (_, _, share) in enumerate(segments):
        _check_fraction(f"segment {index} share", share)
    with localcontext(EXACT):
        share_sum = _total(share for _, _, share in segments)
        if share_sum > ONE + SHARE_SUM_TOLERANCE:
            raise InvalidSegments(
                f"segment shares sum to {format_decimal(share_sum)}, more than the whole "
                "period; segments must not overlap"
            )
        ratings = [rate(plan, usage, share) for plan, usage, share in segments]
        return Rating(
            currency=currency,
            lines=[line for rating in ratings for line in rating.lines],
            base_fee=_total(r.base_fee for r in ratings),
            usage_total=_total(r.usage_total for r in ratings),
            minimum_true_up=_total(r.minimum_true_up for r in ratings),
            subtotal=_total(r.subtotal for r in ratings),
            total=_total(r.total for r in ratings),
        )


def _price_billable(charge: Charge, billable: Decimal, currency: str) -> list[TierLine]:
    """The tier lines of a billable quantity under the charge's model (none for 0)."""
    if billable == ZERO:
        return []
    match charge:
        case PerUnitCharge():
            return [_tier_line(ZERO, None, billable, charge.unit_price, ZERO, currency)]
        case PackageCharge():
            # Partial packages round up; divmod is exact where a division could round.
            whole, rest = divmod(billable, charge.package_size)
            packages = whole + (ONE if rest else ZERO)
            return [_tier_line(ZERO, None, packages, charge.package_price, ZERO, currency)]
        case GraduatedCharge():
            return [
                _tier_line(lower, tier.up_to, units, tier.unit_price, tier.flat_fee, currency)
                for lower, tier in _with_lower_bounds(charge.tiers)
                if (units := _units_in(billable, lower, tier.up_to)) > ZERO
            ]
        case VolumeCharge():
            for lower, tier in _with_lower_bounds(charge.tiers):
                if tier.up_to is None or billable <= tier.up_to:
                    return [
                        _tier_line(
                            lower, tier.up_to, billable, tier.unit_price, tier.flat_fee, currency
                        )
                    ]
            raise AssertionError("unreachable: validated tiers end with an open-ended tier")


def _with_lower_bounds(tiers: list[Tier]) -> list[tuple[Decimal, Tier]]:
    """Each tier with the quantity it starts above (the previous tier's up_to, or 0)."""
    lowers = [ZERO, *(tier.up_to or ZERO for tier in tiers[:-1])]
    return list(zip(lowers, tiers, strict=True))


def _units_in(quantity: Decimal, lower: Decimal, upper: Decimal | None) -> Decimal:
    """How much of ``quantity`` lies in the range (lower, upper]."""
    top = quantity if upper is None else min(quantity, upper)
    return max(top - lower, ZERO)


def _tier_line(
    lower: Decimal,
    upper: Decimal | None,
    units: Decimal,
    unit_price: Decimal,
    flat_fee: Decimal,
    currency: str,
) -> TierLine:
    """A tier line whose amount is units x price + flat fee, rounded once."""
    return TierLine(
        from_unit=lower,
        to_unit=upper,
        units=units,
        unit_price=unit_price,
        flat_fee=flat_fee,
        amount=round_money(units * unit_price + flat_fee, currency),
    )


def _prorate(fee: Decimal | None, fraction: Decimal, currency: str) -> Decimal:
    """A recurring fee's share of the period, rounded (0 when the plan has none)."""
    return round_money((fee or ZERO) * fraction, currency)


def _total(amounts: Iterable[Decimal]) -> Decimal:
    """The exact sum of Decimals (the caller holds the 80-digit context)."""
    return sum(amounts, ZERO)


def _check_quantity(meter: str, quantity: Decimal) -> None:
    if not quantity.is_finite() or quantity < ZERO or quantity >= VALUE_MAX_ABS:
        raise InvalidQuantity(
            f"quantity of {meter!r} must be a finite decimal in [0, 1e29), got {quantity}"
        )


def _check_fraction(name: str, fraction: Decimal) -> None:
    if not fraction.is_finite() or not ZERO <= fraction <= ONE:
        raise InvalidFraction(
            f"{name} must be a decimal in [0, 1] (the covered share of the period), got {fraction}"
        )
