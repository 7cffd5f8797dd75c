"""Property tests of the pricing arithmetic: graduated pricing is monotonic, the models
agree when there is one open tier, and every line and rating adds up exactly."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rating import PlanSpec, price_charge, rate, round_money
from tests.rating.plans import charge

CURRENCIES = st.sampled_from(["EUR", "JPY", "KWD"])
quantities = st.decimals(min_value=0, max_value=10**7, places=3)
prices = st.decimals(min_value=0, max_value=1000, places=4)
fees = st.decimals(min_value=0, max_value=500, places=2)


@st.composite
def tier_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid tiers: 0-5 ascending bounds, then an open tier; random prices and flat fees."""
    bounds = sorted(
        draw(
            st.lists(
                st.decimals(min_value="0.001", max_value=10**6, places=3), max_size=5, unique=True
            )
        )
    )
    return [
        {
            "up_to": str(bound) if bound is not None else None,
            "unit_price": str(draw(prices)),
            "flat_fee": str(draw(fees)),
        }
        for bound in [*bounds, None]
    ]


@st.composite
def charges(draw: st.DrawFn) -> dict[str, Any]:
    """Any valid charge spec: each model, optional included units, minimum and maximum."""
    model = draw(st.sampled_from(["per_unit", "graduated", "volume", "package"]))
    spec: dict[str, Any] = {"model": model, "meter": "pages_printed"}
    if model == "per_unit":
        spec["unit_price"] = str(draw(prices))
    elif model == "package":
        spec["package_size"] = str(draw(st.decimals(min_value="0.001", max_value=1000, places=3)))
        spec["package_price"] = str(draw(prices))
    else:
        spec["tiers"] = draw(tier_lists())
    if draw(st.booleans()):
        spec["included"] = str(draw(quantities))
    bounds = sorted(draw(st.lists(fees, min_size=2, max_size=2)))
    if draw(st.booleans()):
        spec["minimum"] = str(bounds[0])
    if draw(st.booleans()):
        spec["maximum"] = str(bounds[1])
    return spec


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(
        rows=tier_lists(),
        included=quantities,
        low=quantities,
        high=quantities,
        currency=CURRENCIES,
    )
    def test_graduated_monotonic(
        self,
        rows: list[dict[str, Any]],
        included: Decimal,
        low: Decimal,
        high: Decimal,
        currency: str,
    ) -> None:
        """A graduated charge never costs less for more units."""
        low, high = sorted([low, high])
        priced = charge("graduated", tiers=rows, included=str(included))
        assert (
            price_charge(priced, low, currency).amount
            <= price_charge(priced, high, currency).amount
        )

    @settings(max_examples=300, deadline=None)
    @given(unit_price=prices, quantity=quantities, currency=CURRENCIES)
    def test_single_open_tier_models_agree(
        self, unit_price: Decimal, quantity: Decimal, currency: str
    ) -> None:
        """With one open tier, graduated, volume and per-unit pricing are the same."""
        one_tier = [{"up_to": None, "unit_price": str(unit_price)}]
        specs: list[tuple[str, dict[str, Any]]] = [
            ("graduated", {"tiers": one_tier}),
            ("volume", {"tiers": one_tier}),
            ("per_unit", {"unit_price": str(unit_price)}),
        ]
        amounts = {
            price_charge(charge(model, **fields), quantity, currency).amount
            for model, fields in specs
        }
        assert len(amounts) == 1

    @settings(max_examples=300, deadline=None)
    @given(spec=charges(), quantity=quantities, currency=CURRENCIES)
    def test_line_adds_up(self, spec: dict[str, Any], quantity: Decimal, currency: str) -> None:
        """A line's tier amounts (plus its min/max adjustment) sum to its amount exactly;
        without minimum or maximum the tier amounts alone do."""
        line = price_charge(charge(**spec), quantity, currency)
        assert sum((tier.amount for tier in line.tiers), line.adjustment) == line.amount
        if "minimum" not in spec and "maximum" not in spec:
            assert line.adjustment == 0
            assert sum(tier.amount for tier in line.tiers) == line.amount
        assert line.included + line.billable == line.quantity
        assert line.amount == line.amount.quantize(line.adjustment)

    @settings(max_examples=200, deadline=None)
    @given(
        spec=charges(),
        quantity=quantities,
        base_fee=fees,
        commitment=fees,
        fraction=st.decimals(min_value=0, max_value=1, places=6),
        currency=CURRENCIES,
    )
    def test_rating_adds_up(
        self,
        spec: dict[str, Any],
        quantity: Decimal,
        base_fee: Decimal,
        commitment: Decimal,
        fraction: Decimal,
        currency: str,
    ) -> None:
        """A rating's totals are exact sums of its lines and never below the prorated,
        rounded commitment."""
        plan = PlanSpec.model_validate(
            {
                "name": "Property plan",
                "currency": currency,
                "billing_period": "month",
                "base_fee": str(base_fee),
                "minimum_commitment": str(commitment),
                "charges": [spec],
            }
        )
        rating = rate(plan, {"pages_printed": quantity}, fraction)
        assert rating.usage_total == sum(line.amount for line in rating.lines)
        assert rating.subtotal == rating.base_fee + rating.usage_total
        assert rating.total == rating.subtotal + rating.minimum_true_up
        assert rating.minimum_true_up >= 0
        assert rating.total >= round_money(commitment * fraction, currency)
