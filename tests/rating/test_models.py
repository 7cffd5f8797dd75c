"""Unit tests of the plan models (tiers, charges, plans: parsing and validation) and of the
JSON form of plans and ratings (every Decimal a string)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from rating import (
    GraduatedCharge,
    PackageCharge,
    PerUnitCharge,
    PlanSpec,
    VolumeCharge,
    rate,
)
from tests.rating.plans import WORKED_TIERS, charge, charge_spec, plan, tiers

D = Decimal


class TestTiers:
    @pytest.mark.parametrize(
        ("rows", "match"),
        [
            pytest.param([], "at least one tier", id="empty"),
            pytest.param(tiers(("10", "1"), ("5", "1"), (None, "1")), "ascend", id="unsorted"),
            pytest.param(tiers(("5", "1"), ("5", "1"), (None, "1")), "ascend", id="equal-bounds"),
            pytest.param(tiers(("5", "1"), ("10", "1")), "open-ended", id="no-open-last-tier"),
            pytest.param(tiers((None, "1"), (None, "1")), "only the last", id="open-in-middle"),
            pytest.param(tiers(("0", "1"), (None, "1")), "greater than 0", id="zero-bound"),
            pytest.param(tiers(("5", "-1"), (None, "1")), "greater than or equal", id="neg-price"),
            pytest.param(
                tiers(("5", "1", "-2"), (None, "1")), "greater than or equal", id="neg-fee"
            ),
            pytest.param(tiers(("5", "abc"), (None, "1")), "decimal", id="not-a-number"),
            pytest.param(tiers(("5", "NaN"), (None, "1")), "finite", id="nan-price"),
        ],
    )
    @pytest.mark.parametrize("model", ["graduated", "volume"])
    def test_invalid_tiers(self, model: str, rows: list[dict[str, Any]], match: str) -> None:
        """Tiers must ascend, end open-ended and have non-negative prices."""
        with pytest.raises(ValidationError, match=match):
            charge(model, tiers=rows)

    @pytest.mark.parametrize(
        "rows",
        [
            pytest.param(tiers((None, "6.00")), id="single-open-tier"),
            pytest.param(WORKED_TIERS, id="worked-example"),
            pytest.param(tiers(("0.5", "1", "3"), ("0.75", "0"), (None, "0")), id="fractional"),
        ],
    )
    def test_valid_tiers(self, rows: list[dict[str, Any]]) -> None:
        """Ascending tiers ending in an open one are accepted; flat fees default to 0."""
        priced = charge("graduated", tiers=rows)
        assert isinstance(priced, GraduatedCharge)
        assert priced.tiers[-1].up_to is None
        assert all(tier.flat_fee >= 0 for tier in priced.tiers)


class TestCharge:
    @pytest.mark.parametrize(
        ("spec", "kind"),
        [
            pytest.param(charge_spec("per_unit", unit_price="0.10"), PerUnitCharge, id="per-unit"),
            pytest.param(charge_spec("graduated", tiers=WORKED_TIERS), GraduatedCharge, id="grad"),
            pytest.param(charge_spec("volume", tiers=WORKED_TIERS), VolumeCharge, id="volume"),
            pytest.param(
                charge_spec("package", package_size="100", package_price="5"),
                PackageCharge,
                id="package",
            ),
        ],
    )
    def test_model_selects_class(self, spec: dict[str, Any], kind: type[object]) -> None:
        """The ``model`` field selects the charge's class; optional fields default."""
        priced = charge(**spec)
        assert isinstance(priced, kind)
        assert (priced.included, priced.minimum, priced.maximum) == (D(0), None, None)

    @pytest.mark.parametrize(
        ("spec", "match"),
        [
            pytest.param(charge_spec("tiered", unit_price="1"), "does not match any", id="model"),
            pytest.param(charge_spec("per_unit"), "unit_price", id="missing-price"),
            pytest.param(
                charge_spec("package", package_size="0", package_price="5"),
                "greater than 0",
                id="zero-package-size",
            ),
            pytest.param(
                charge_spec("per_unit", unit_price="1", included="-1"),
                "greater than or equal",
                id="negative-included",
            ),
            pytest.param(
                charge_spec("per_unit", unit_price="1", minimum="20", maximum="10"),
                "minimum 20 is above maximum 10",
                id="minimum-above-maximum",
            ),
            pytest.param(
                charge_spec("per_unit", meter="Pages Printed", unit_price="1"),
                "pattern",
                id="bad-meter-name",
            ),
            pytest.param(
                charge_spec("per_unit", unit_price="1", tiers=WORKED_TIERS),
                "Extra inputs",
                id="extra-field",
            ),
        ],
    )
    def test_invalid_charge(self, spec: dict[str, Any], match: str) -> None:
        """A charge with an unknown model, missing or out-of-range fields is refused."""
        with pytest.raises(ValidationError, match=match):
            charge(**spec)


class TestPlanSpec:
    def test_duplicate_meter(self) -> None:
        """A plan prices each meter with one charge only."""
        with pytest.raises(ValidationError, match="pages_printed priced more than once"):
            plan(
                charge_spec("per_unit", unit_price="1"),
                charge_spec("volume", tiers=WORKED_TIERS),
            )

    @pytest.mark.parametrize(
        ("fields", "match"),
        [
            pytest.param({"currency": "eur"}, "pattern", id="lowercase-currency"),
            pytest.param({"currency": "EURO"}, "pattern", id="long-currency"),
            pytest.param({"billing_period": "week"}, "'month' or 'year'", id="period"),
            pytest.param({"base_fee": "-1"}, "greater than or equal", id="negative-base-fee"),
            pytest.param({"minimum_commitment": "-1"}, "greater than", id="negative-commitment"),
            pytest.param({"name": ""}, "at least 1 character", id="empty-name"),
            pytest.param({"charges": None}, "valid list", id="charges-null"),
        ],
    )
    def test_invalid_plan(self, fields: dict[str, Any], match: str) -> None:
        """Plan fields are validated: ISO currency code, month or year, non-negative fees."""
        doc = plan().model_dump() | fields
        with pytest.raises(ValidationError, match=match):
            PlanSpec.model_validate(doc)

    def test_json_round_trip(self) -> None:
        """A plan survives JSON unchanged, with every number as a decimal string."""
        original = plan(
            charge_spec("graduated", tiers=WORKED_TIERS, included="500", maximum="99.95"),
            charge_spec("package", meter="door_cycles", package_size="1000", package_price="2.5"),
            base_fee="49.00",
            minimum_commitment="100",
        )
        text = original.model_dump_json()
        assert PlanSpec.model_validate_json(text) == original
        doc = json.loads(text)
        assert doc["base_fee"] == "49"
        assert doc["charges"][0]["tiers"][1] == {
            "up_to": "10",
            "unit_price": "6.5",
            "flat_fee": "0",
        }

    def test_plan_without_charges(self) -> None:
        """A plan may consist of fees only."""
        assert plan(base_fee="10").charges == []


class TestRatingJson:
    def test_amounts_keep_minor_unit(self) -> None:
        """In JSON, amounts keep the currency's decimals and quantities are plain strings."""
        priced = plan(charge_spec("graduated", tiers=WORKED_TIERS), base_fee="10")
        doc = json.loads(rate(priced, {"pages_printed": D("6.000")}).model_dump_json())
        assert doc["total"] == "51.50"
        line = doc["lines"][0]
        assert (line["quantity"], line["billable"], line["amount"], line["adjustment"]) == (
            "6",
            "6",
            "41.50",
            "0.00",
        )
        assert line["tiers"][1] == {
            "from_unit": "5",
            "to_unit": "10",
            "units": "1",
            "unit_price": "6.5",
            "flat_fee": "0",
            "amount": "6.50",
        }

    def test_jpy_amounts(self) -> None:
        """JPY amounts have no decimal point in JSON."""
        priced = plan(charge_spec("per_unit", unit_price="12.5"), currency="JPY")
        doc = json.loads(rate(priced, {"pages_printed": D(4)}).model_dump_json())
        assert (doc["usage_total"], doc["total"]) == ("50", "50")

    def test_python_dump_keeps_decimals(self) -> None:
        """model_dump() in Python mode keeps Decimals for further arithmetic."""
        dumped = rate(plan(base_fee="10"), {}).model_dump()
        assert dumped["total"] == D("10.00")
        assert isinstance(dumped["total"], Decimal)
