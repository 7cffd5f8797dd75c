"""Unit tests of currencies' minor units and half-even rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest

from rating import minor_unit, round_money


class TestMinorUnit:
    @pytest.mark.parametrize(
        ("currency", "decimals"),
        [
            pytest.param("EUR", 2, id="eur"),
            pytest.param("USD", 2, id="usd"),
            pytest.param("GBP", 2, id="gbp"),
            pytest.param("JPY", 0, id="jpy"),
            pytest.param("KRW", 0, id="krw"),
            pytest.param("KWD", 3, id="kwd"),
            pytest.param("BHD", 3, id="bhd"),
            pytest.param("JOD", 3, id="jod"),
            pytest.param("XYZ", 2, id="unknown-defaults-to-two"),
        ],
    )
    def test_table(self, currency: str, decimals: int) -> None:
        """Each currency has its ISO 4217 number of decimals, 2 when not listed."""
        assert minor_unit(currency) == decimals


class TestRoundMoney:
    @pytest.mark.parametrize(
        ("value", "currency", "expected"),
        [
            pytest.param("0.125", "EUR", "0.12", id="half-down-to-even"),
            pytest.param("0.135", "EUR", "0.14", id="half-up-to-even"),
            pytest.param("0.1250000001", "EUR", "0.13", id="just-above-half"),
            pytest.param("7", "EUR", "7.00", id="pads-to-minor-unit"),
            pytest.param("2.5", "JPY", "2", id="jpy-half-to-even"),
            pytest.param("3.5", "JPY", "4", id="jpy-half-up-to-even"),
            pytest.param("1.0005", "KWD", "1.000", id="kwd-half-to-even"),
            pytest.param(
                "123456789012345678901234567.125",
                "EUR",
                "123456789012345678901234567.12",
                id="beyond-default-precision",
            ),
        ],
    )
    def test_half_even(self, value: str, currency: str, expected: str) -> None:
        """Amounts round half-even to the minor unit, exactly even for 27-digit amounts."""
        assert str(round_money(Decimal(value), currency)) == expected
