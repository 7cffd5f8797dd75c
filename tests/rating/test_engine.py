"""Unit tests of the pricing engine: each charge model (with the issue's worked example),
included units, per-charge minimum and maximum, half-even rounding per line, base fee and
minimum commitment, partial periods, plan changes mid-period, and bad input.

Amounts are compared as strings, so each check also pins the currency's minor unit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from rating import (
    CurrencyMismatch,
    InvalidFraction,
    InvalidQuantity,
    InvalidSegments,
    PlanSpec,
    RatingError,
    price_charge,
    rate,
    rate_segments,
)
from tests.rating.plans import WORKED_TIERS, amount, charge, charge_spec, plan, tiers

D = Decimal


class TestPerUnit:
    @pytest.mark.parametrize(
        ("quantity", "unit_price", "expected"),
        [
            pytest.param("0", "2.50", "0.00", id="zero"),
            pytest.param("1", "2.50", "2.50", id="one"),
            pytest.param("10", "2.50", "25.00", id="ten"),
            pytest.param("1.5", "0.40", "0.60", id="fractional-quantity"),
            pytest.param("3", "0", "0.00", id="free"),
            pytest.param("1000000", "0.0015", "1500.00", id="sub-cent-price"),
        ],
    )
    def test_amount(self, quantity: str, unit_price: str, expected: str) -> None:
        """Every billable unit costs the unit price."""
        assert str(amount(charge("per_unit", unit_price=unit_price), quantity)) == expected

    def test_one_tier_line(self) -> None:
        """A per-unit charge is itemised as one unbounded tier line."""
        line = price_charge(charge("per_unit", unit_price="2.50"), D(4), "EUR")
        assert [(t.from_unit, t.to_unit, t.units, t.amount) for t in line.tiers] == [
            (D(0), None, D(4), D("10.00"))
        ]


class TestGraduated:
    @pytest.mark.parametrize(
        ("quantity", "expected"),
        [
            pytest.param("0", "0.00", id="zero"),
            pytest.param("1", "7.00", id="first-unit"),
            pytest.param("5", "35.00", id="end-of-first-tier"),
            pytest.param("6", "41.50", id="worked-6"),
            pytest.param("10", "67.50", id="end-of-second-tier"),
            pytest.param("20", "127.50", id="worked-20"),
            pytest.param("25", "157.50", id="worked-25"),
            pytest.param("5.5", "38.25", id="fractional-into-second-tier"),
        ],
    )
    def test_worked_example(self, quantity: str, expected: str) -> None:
        """Each unit is priced in the tier it falls in (the issue's worked example)."""
        assert str(amount(charge("graduated", tiers=WORKED_TIERS), quantity)) == expected

    def test_tier_breakdown(self) -> None:
        """25 units are itemised as 5 at 7.00, 5 at 6.50 and 15 at 6.00."""
        line = price_charge(charge("graduated", tiers=WORKED_TIERS), D(25), "EUR")
        assert [
            (t.from_unit, t.to_unit, t.units, t.unit_price, str(t.amount)) for t in line.tiers
        ] == [
            (D(0), D(5), D(5), D("7.00"), "35.00"),
            (D(5), D(10), D(5), D("6.50"), "32.50"),
            (D(10), None, D(15), D("6.00"), "90.00"),
        ]

    def test_only_used_tiers_listed(self) -> None:
        """Tiers no unit reaches are not itemised."""
        line = price_charge(charge("graduated", tiers=WORKED_TIERS), D(3), "EUR")
        assert [t.units for t in line.tiers] == [D(3)]


class TestVolume:
    @pytest.mark.parametrize(
        ("quantity", "expected"),
        [
            pytest.param("0", "0.00", id="zero"),
            pytest.param("1", "7.00", id="first-unit"),
            pytest.param("5", "35.00", id="end-of-first-tier"),
            pytest.param("6", "39.00", id="worked-6"),
            pytest.param("10", "65.00", id="end-of-second-tier"),
            pytest.param("11", "66.00", id="start-of-third-tier"),
            pytest.param("20", "120.00", id="worked-20"),
            pytest.param("25", "150.00", id="worked-25"),
        ],
    )
    def test_worked_example(self, quantity: str, expected: str) -> None:
        """All units are priced at the tier the total falls in (the issue's worked example)."""
        assert str(amount(charge("volume", tiers=WORKED_TIERS), quantity)) == expected

    def test_one_tier_line(self) -> None:
        """A volume charge is itemised as the one tier the total falls in."""
        line = price_charge(charge("volume", tiers=WORKED_TIERS), D(6), "EUR")
        assert [(t.from_unit, t.to_unit, t.units, str(t.amount)) for t in line.tiers] == [
            (D(5), D(10), D(6), "39.00")
        ]


class TestFlatFees:
    FLAT = tiers(("5", "1.00", "10.00"), (None, "0.50", "20.00"))

    @pytest.mark.parametrize(
        ("model", "quantity", "expected"),
        [
            pytest.param("graduated", "0", "0.00", id="graduated-zero-no-fee"),
            pytest.param("graduated", "3", "13.00", id="graduated-first-tier-fee"),
            pytest.param("graduated", "5", "15.00", id="graduated-boundary-one-fee"),
            pytest.param("graduated", "6", "35.50", id="graduated-both-fees"),
            pytest.param("volume", "0", "0.00", id="volume-zero-no-fee"),
            pytest.param("volume", "3", "13.00", id="volume-first-tier-fee"),
            pytest.param("volume", "6", "23.00", id="volume-only-last-tier-fee"),
        ],
    )
    def test_flat_fee(self, model: str, quantity: str, expected: str) -> None:
        """A tier's flat fee is charged once when units fall in it, never for zero usage."""
        assert str(amount(charge(model, tiers=self.FLAT), quantity)) == expected


class TestPackage:
    @pytest.mark.parametrize(
        ("quantity", "packages", "expected"),
        [
            pytest.param("0", None, "0.00", id="zero-no-package"),
            pytest.param("1", "1", "5.00", id="one-unit-one-package"),
            pytest.param("100", "1", "5.00", id="exactly-size"),
            pytest.param("101", "2", "10.00", id="size-plus-one"),
            pytest.param("250", "3", "15.00", id="partial-rounds-up"),
            pytest.param("0.001", "1", "5.00", id="tiny-fraction"),
        ],
    )
    def test_packages_round_up(self, quantity: str, packages: str | None, expected: str) -> None:
        """A started package is a whole package; no usage is no package."""
        line = price_charge(
            charge("package", package_size="100", package_price="5.00"), D(quantity), "EUR"
        )
        assert [t.units for t in line.tiers] == ([] if packages is None else [D(packages)])
        assert str(line.amount) == expected

    def test_fractional_package_size(self) -> None:
        """Package sizes may be fractional (0.75 km in 0.5 km packages is 2 packages)."""
        priced = charge("package", package_size="0.5", package_price="1.20")
        assert str(amount(priced, "0.75")) == "2.40"


class TestIncluded:
    @pytest.mark.parametrize(
        ("quantity", "included", "billable", "expected"),
        [
            pytest.param("0", "0", "0", "0.00", id="zero-usage"),
            pytest.param("50", "50", "0", "0.00", id="included-above-quantity"),
            pytest.param("100", "100", "0", "0.00", id="exactly-included"),
            pytest.param("150", "100", "50", "5.00", id="beyond-included"),
        ],
    )
    def test_per_unit(self, quantity: str, included: str, billable: str, expected: str) -> None:
        """Included units are free; the line reports the allowance used and the rest."""
        line = price_charge(
            charge("per_unit", unit_price="0.10", included="100"), D(quantity), "EUR"
        )
        assert (line.quantity, line.included, line.billable) == (
            D(quantity),
            D(included),
            D(billable),
        )
        assert str(line.amount) == expected

    @pytest.mark.parametrize(
        ("spec", "quantity", "expected"),
        [
            pytest.param(
                charge_spec("graduated", tiers=WORKED_TIERS, included="5"),
                "11",
                "41.50",
                id="graduated-tiers-start-after-included",
            ),
            pytest.param(
                charge_spec("volume", tiers=WORKED_TIERS, included="5"),
                "25",
                "120.00",
                id="volume-tier-of-billable",
            ),
            pytest.param(
                charge_spec("package", package_size="100", package_price="5", included="100"),
                "101",
                "5.00",
                id="package-of-billable",
            ),
            pytest.param(
                charge_spec("package", package_size="100", package_price="5", included="100"),
                "100",
                "0.00",
                id="package-all-included",
            ),
        ],
    )
    def test_models_price_billable(
        self, spec: dict[str, Any], quantity: str, expected: str
    ) -> None:
        """Every model prices the quantity left after the included units."""
        assert str(amount(charge(**spec), quantity)) == expected


class TestMinimumMaximum:
    @pytest.mark.parametrize(
        ("bounds", "quantity", "expected", "adjustment"),
        [
            pytest.param({"minimum": "10"}, "3", "10.00", "7.00", id="minimum-lifts"),
            pytest.param({"minimum": "10"}, "0", "10.00", "10.00", id="minimum-at-zero-usage"),
            pytest.param({"minimum": "10"}, "30", "30.00", "0.00", id="above-minimum"),
            pytest.param({"maximum": "20"}, "30", "20.00", "-10.00", id="maximum-caps"),
            pytest.param({"maximum": "20"}, "15", "15.00", "0.00", id="below-maximum"),
            pytest.param({"minimum": "10", "maximum": "20"}, "15", "15.00", "0.00", id="between"),
            pytest.param({"minimum": "5", "maximum": "5"}, "9", "5.00", "-4.00", id="fixed"),
            pytest.param({"maximum": "19.995"}, "30", "20.00", "-10.00", id="bound-rounded"),
        ],
    )
    def test_clamp(
        self, bounds: dict[str, str], quantity: str, expected: str, adjustment: str
    ) -> None:
        """The charge's amount is clamped to its minimum and maximum; the adjustment says
        by how much, so the tier lines plus the adjustment still add up to the amount."""
        line = price_charge(charge("per_unit", unit_price="1.00", **bounds), D(quantity), "EUR")
        assert (str(line.amount), str(line.adjustment)) == (expected, adjustment)
        assert sum((t.amount for t in line.tiers), line.adjustment) == line.amount


class TestRounding:
    @pytest.mark.parametrize(
        ("currency", "unit_price", "expected"),
        [
            pytest.param("EUR", "0.125", "0.12", id="eur-half-to-even-down"),
            pytest.param("EUR", "0.135", "0.14", id="eur-half-to-even-up"),
            pytest.param("EUR", "0.1251", "0.13", id="eur-above-half"),
            pytest.param("USD", "0.145", "0.14", id="usd-half-to-even"),
            pytest.param("JPY", "0.5", "0", id="jpy-half-to-zero"),
            pytest.param("JPY", "1.5", "2", id="jpy-half-to-two"),
            pytest.param("JPY", "2.5", "2", id="jpy-half-stays-two"),
            pytest.param("KWD", "0.0015", "0.002", id="kwd-three-decimals"),
            pytest.param("CHF", "0.005", "0.00", id="unlisted-two-decimals"),
        ],
    )
    def test_line_rounded_half_even(self, currency: str, unit_price: str, expected: str) -> None:
        """A line is rounded half-even to the currency's minor unit."""
        priced = charge("per_unit", unit_price=unit_price)
        assert str(amount(priced, "1", currency)) == expected

    def test_line_is_sum_of_rounded_tiers(self) -> None:
        """Tier amounts are rounded first and the line is their sum (0.12 + 0.12, not 0.25)."""
        priced = charge("graduated", tiers=tiers(("1", "0.125"), (None, "0.125")))
        line = price_charge(priced, D(2), "EUR")
        assert [str(t.amount) for t in line.tiers] == ["0.12", "0.12"]
        assert str(line.amount) == "0.24"

    def test_prorated_fee_rounded(self) -> None:
        """A prorated base fee is rounded half-even on its own line (24.995 -> 25.00)."""
        rating = rate(plan(base_fee="49.99"), {}, D("0.5"))
        assert str(rating.base_fee) == "25.00"


class TestRate:
    PRINT = plan(
        charge_spec("graduated", tiers=WORKED_TIERS),
        charge_spec("per_unit", meter="door_cycles", unit_price="0.01"),
        base_fee="10.00",
        minimum_commitment="100.00",
    )

    @pytest.mark.parametrize(
        ("quantities", "usage_total", "true_up", "total"),
        [
            pytest.param({}, "0.00", "90.00", "100.00", id="zero-usage-trued-up"),
            pytest.param({"pages_printed": D(6)}, "41.50", "48.50", "100.00", id="below"),
            pytest.param({"pages_printed": D(20)}, "127.50", "0.00", "137.50", id="above"),
            pytest.param(
                {"pages_printed": D(10), "door_cycles": D(2250)},
                "90.00",
                "0.00",
                "100.00",
                id="exactly-committed",
            ),
        ],
    )
    def test_minimum_commitment(
        self, quantities: dict[str, Decimal], usage_total: str, true_up: str, total: str
    ) -> None:
        """A true-up brings base fee plus charges up to the minimum commitment, and is
        zero when they reach it."""
        rating = rate(self.PRINT, quantities)
        assert (str(rating.usage_total), str(rating.minimum_true_up), str(rating.total)) == (
            usage_total,
            true_up,
            total,
        )
        assert rating.subtotal == rating.base_fee + rating.usage_total

    def test_zero_usage_lines(self) -> None:
        """Missing meters count zero and still get a line with no tiers."""
        rating = rate(self.PRINT, {})
        assert [
            (line.meter, line.quantity, line.tiers, str(line.amount)) for line in rating.lines
        ] == [
            ("pages_printed", D(0), [], "0.00"),
            ("door_cycles", D(0), [], "0.00"),
        ]

    def test_unpriced_meters_ignored(self) -> None:
        """Meters the plan does not price are ignored, even negative gauges."""
        rating = rate(self.PRINT, {"pages_printed": D(20), "temperature_c": D(-4)})
        assert [line.meter for line in rating.lines] == ["pages_printed", "door_cycles"]
        assert str(rating.total) == "137.50"

    def test_no_fees(self) -> None:
        """A plan without base fee or commitment costs its charges only."""
        rating = rate(plan(charge_spec("volume", tiers=WORKED_TIERS)), {"pages_printed": D(25)})
        assert (str(rating.base_fee), str(rating.minimum_true_up), str(rating.total)) == (
            "0.00",
            "0.00",
            "150.00",
        )

    @pytest.mark.parametrize(
        ("fraction", "base_fee", "true_up"),
        [
            pytest.param("1", "10.00", "48.50", id="whole-period"),
            pytest.param("0.5", "5.00", "3.50", id="half-period"),
            pytest.param("0", "0.00", "0.00", id="nothing-covered"),
        ],
    )
    def test_fee_fraction(self, fraction: str, base_fee: str, true_up: str) -> None:
        """The fee fraction prorates base fee and commitment, not usage."""
        rating = rate(self.PRINT, {"pages_printed": D(6)}, D(fraction))
        assert (str(rating.base_fee), str(rating.usage_total), str(rating.minimum_true_up)) == (
            base_fee,
            "41.50",
            true_up,
        )

    def test_jpy_rating(self) -> None:
        """A JPY plan's amounts have no decimals."""
        rating = rate(
            plan(charge_spec("per_unit", unit_price="12.5"), currency="JPY", base_fee="1000"),
            {"pages_printed": D(3)},
            D("0.5"),
        )
        assert (rating.currency, str(rating.base_fee), str(rating.total)) == ("JPY", "500", "538")


class TestRateSegments:
    BASIC = plan(
        charge_spec("per_unit", unit_price="0.10"),
        base_fee="30.00",
        minimum_commitment="100.00",
    )
    PRO = plan(charge_spec("graduated", tiers=WORKED_TIERS), base_fee="60.00")

    def test_plan_change_mid_period(self) -> None:
        """Fees are prorated per segment, usage priced per segment, and all lines listed."""
        rating = rate_segments(
            [
                (self.BASIC, {"pages_printed": D(100)}, D("0.5")),
                (self.PRO, {"pages_printed": D(6)}, D("0.5")),
            ]
        )
        assert [(line.meter, line.quantity, str(line.amount)) for line in rating.lines] == [
            ("pages_printed", D(100), "10.00"),
            ("pages_printed", D(6), "41.50"),
        ]
        assert (str(rating.base_fee), str(rating.usage_total)) == ("45.00", "51.50")
        # BASIC's prorated commitment (50.00) against its own 15.00 + 10.00.
        assert (str(rating.minimum_true_up), str(rating.subtotal), str(rating.total)) == (
            "25.00",
            "96.50",
            "121.50",
        )

    def test_tiers_restart_per_segment(self) -> None:
        """Tiers start again in each segment: 6 + 6 units cost 2 x 41.50, not the 12-unit price."""
        rating = rate_segments(
            [
                (self.PRO, {"pages_printed": D(6)}, D("0.5")),
                (self.PRO, {"pages_printed": D(6)}, D("0.5")),
            ]
        )
        assert str(rating.usage_total) == "83.00"
        assert str(rate(self.PRO, {"pages_printed": D(12)}).usage_total) == "79.50"

    def test_single_segment_is_rate(self) -> None:
        """One segment covering the period rates exactly like rate()."""
        usage = {"pages_printed": D(20)}
        assert rate_segments([(self.BASIC, usage, D(1))]) == rate(self.BASIC, usage)

    def test_shares_of_thirds(self) -> None:
        """Shares computed by division may overshoot 1 by rounding and are accepted."""
        third = D(1) / D(6) * 2
        rating = rate_segments([(self.PRO, {}, third)] * 3)
        assert str(rating.base_fee) == "60.00"


class TestErrors:
    @pytest.mark.parametrize(
        "quantity",
        [
            pytest.param(D(-1), id="negative"),
            pytest.param(D("-0.000000001"), id="slightly-negative"),
            pytest.param(D("NaN"), id="nan"),
            pytest.param(D("Infinity"), id="infinite"),
            pytest.param(D("1e29"), id="out-of-range"),
        ],
    )
    def test_bad_quantity(self, quantity: Decimal) -> None:
        """A negative, non-finite or out-of-range quantity of a priced meter is refused."""
        with pytest.raises(InvalidQuantity, match="pages_printed"):
            rate(plan(charge_spec("per_unit", unit_price="1")), {"pages_printed": quantity})

    @pytest.mark.parametrize(
        "fraction",
        [
            pytest.param(D("-0.1"), id="negative"),
            pytest.param(D("1.0001"), id="above-one"),
            pytest.param(D("NaN"), id="nan"),
        ],
    )
    def test_bad_fee_fraction(self, fraction: Decimal) -> None:
        """A fee fraction outside [0, 1] is refused."""
        with pytest.raises(InvalidFraction, match="fee_fraction"):
            rate(plan(base_fee="10"), {}, fraction)

    def test_currency_mismatch(self) -> None:
        """Segments of one period must share a currency."""
        with pytest.raises(CurrencyMismatch, match="EUR, USD"):
            rate_segments(
                [(plan(currency="EUR"), {}, D("0.5")), (plan(currency="USD"), {}, D("0.5"))]
            )

    @pytest.mark.parametrize(
        ("segments", "error", "match"),
        [
            pytest.param([], InvalidSegments, "at least one segment", id="no-segments"),
            pytest.param(
                [(plan(), {}, D(1)), (plan(), {}, D(1))],
                InvalidSegments,
                "sum to 2",
                id="overlapping-shares",
            ),
            pytest.param(
                [(plan(), {}, D("-0.5"))], InvalidFraction, "segment 0 share", id="negative-share"
            ),
        ],
    )
    def test_bad_segments(
        self,
        segments: list[tuple[PlanSpec, dict[str, Decimal], Decimal]],
        error: type[RatingError],
        match: str,
    ) -> None:
        """No segments, overlapping shares and shares outside [0, 1] are refused."""
        with pytest.raises(error, match=match):
            rate_segments(segments)

    @pytest.mark.parametrize(
        "error", [InvalidQuantity, InvalidFraction, InvalidSegments, CurrencyMismatch]
    )
    def test_hierarchy(self, error: type[Exception]) -> None:
        """Every engine error is a RatingError and so a ValueError."""
        assert issubclass(error, RatingError)
        assert issubclass(error, ValueError)
