"""The API's input types: instants, timezone names, exact decimals and billing periods are
refused with a ValueError that pydantic reports as bad input, never with an OverflowError,
OSError or InvalidOperation."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.billing import PeriodName, period_parts
from schemas.inputs import ExactDecimal, Instant, TimezoneName, check_timezone

INSTANT: TypeAdapter[datetime] = TypeAdapter(Instant)
TIMEZONE: TypeAdapter[str] = TypeAdapter(TimezoneName)
DECIMAL: TypeAdapter[Decimal] = TypeAdapter(ExactDecimal)
PERIOD: TypeAdapter[str] = TypeAdapter(PeriodName)


class TestInstant:
    """ISO 8601 strings with an offset, 1970-01-01 to 2299-12-31, in UTC once parsed."""

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            pytest.param("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC), id="first"),
            pytest.param(
                "2299-12-31T23:59:59.999Z",
                datetime(2299, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
                id="last",
            ),
            pytest.param(
                "2026-11-01T00:00:00+01:00", datetime(2026, 10, 31, 23, tzinfo=UTC), id="offset"
            ),
            pytest.param(
                "2026-11-27T09:00:00.123456789Z",
                datetime(2026, 11, 27, 9, 0, 0, 123000, tzinfo=UTC),
                id="nanoseconds-truncated",
            ),
        ],
    )
    def test_accepted(self, raw: str, expected: datetime) -> None:
        """An instant in range is read in UTC, truncated to milliseconds."""
        value = INSTANT.validate_python(raw)
        assert value == expected
        assert value.tzinfo is UTC

    @pytest.mark.parametrize(
        ("raw", "match"),
        [
            pytest.param("0001-01-01T00:00:00+01:00", "between 1970", id="year-1-overflows"),
            pytest.param("9999-12-31T23:59:59-01:00", "between 1970", id="year-9999-overflows"),
            pytest.param("0999-06-01T00:00:00Z", "between 1970", id="year-below-1000"),
            pytest.param("1969-12-31T23:59:59.999Z", "between 1970", id="just-before"),
            pytest.param("1970-01-01T00:30:00+01:00", "between 1970", id="before-in-utc"),
            pytest.param("2300-01-01T00:00:00Z", "between 1970", id="just-after"),
            pytest.param("2299-12-31T23:30:00-01:00", "between 1970", id="after-in-utc"),
            pytest.param("2026-11-27T09:00:00", "offset", id="naive"),
            pytest.param("2026-11-27 09:00:00Z", "ISO 8601", id="space-separated"),
            pytest.param("2026-11-27T09:00Z", "ISO 8601", id="no-seconds"),
            pytest.param(0, "ISO 8601", id="unix-timestamp"),
            pytest.param(1.5e9, "ISO 8601", id="float-timestamp"),
        ],
    )
    def test_refused(self, raw: object, match: str) -> None:
        """Out of range, without an offset or not an ISO 8601 string: a validation error."""
        with pytest.raises(ValidationError, match=match):
            INSTANT.validate_python(raw)


class TestTimezoneName:
    """IANA timezone names, looked up in the list of zones, never opened as files."""

    @pytest.mark.parametrize("name", ["UTC", "Europe/Amsterdam", "America/Argentina/Salta"])
    def test_accepted(self, name: str) -> None:
        """A zone of the tz database is accepted as it is."""
        assert TIMEZONE.validate_python(name) == name

    @pytest.mark.parametrize(
        "name",
        [
            pytest.param("a" * 300, id="name-too-long-for-a-file"),
            pytest.param("Europe/" + "x" * 250, id="long-under-a-directory"),
            pytest.param("Etc", id="a-directory"),
            pytest.param("Europe", id="another-directory"),
            pytest.param("Mars/Base", id="unknown"),
            pytest.param("posix/Europe/Amsterdam", id="posix-variant"),
            pytest.param("right/UTC", id="right-variant"),
            pytest.param("localtime", id="localtime"),
            pytest.param("Factory", id="factory"),
            pytest.param("zone.tab", id="a-data-file"),
            pytest.param("../../etc/passwd", id="a-path"),
            pytest.param("UTC\x00", id="nul"),
            pytest.param("", id="empty"),
        ],
    )
    def test_refused(self, name: str) -> None:
        """Anything but a zone name is a validation error, never an OSError."""
        with pytest.raises(ValidationError):
            TIMEZONE.validate_python(name)

    def test_message_is_short(self) -> None:
        """The message names the zone, clipped, and gives an example of a valid one."""
        with pytest.raises(ValueError, match=r"unknown IANA timezone 'a{37}\.\.\.' \(e\.g\."):
            check_timezone("a" * 300)


class TestExactDecimal:
    """Decimal strings that Decimal(38, 9) holds exactly: 29 digits, then 9 decimals."""

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            pytest.param("12.50", Decimal("12.50"), id="money"),
            pytest.param("0", Decimal(0), id="zero"),
            pytest.param("9" * 29 + ".999999999", Decimal("9" * 29 + ".999999999"), id="largest"),
            pytest.param("0.000000001", Decimal("1e-9"), id="smallest"),
            pytest.param("-1", Decimal(-1), id="negative-left-to-the-field-bound"),
            pytest.param(Decimal("2.5"), Decimal("2.5"), id="python-decimal"),
        ],
    )
    def test_accepted(self, raw: object, expected: Decimal) -> None:
        """A plain decimal string within the store's range is read exactly."""
        assert DECIMAL.validate_python(raw) == expected

    @pytest.mark.parametrize(
        ("raw", "match"),
        [
            pytest.param("1" + "0" * 29, "at most 29 digits", id="30-digits"),
            pytest.param("0.0000000001", "9 after", id="10-decimals"),
            pytest.param("1e40", "not a decimal string", id="exponent"),
            pytest.param("1e-999999999", "not a decimal string", id="tiny-exponent"),
            pytest.param("1E+999999999999999999", "not a decimal string", id="huge-exponent"),
            pytest.param("NaN", "finite", id="nan"),
            pytest.param("-Infinity", "finite", id="infinity"),
            pytest.param(" 1", "not a decimal string", id="whitespace"),
            pytest.param("01", "not a decimal string", id="leading-zero"),
            pytest.param("1.", "not a decimal string", id="no-fraction-digits"),
            pytest.param("", "not a decimal string", id="empty"),
            pytest.param(12, "not a JSON int", id="json-int"),
            pytest.param(0.1, "not a JSON float", id="json-float"),
            pytest.param(True, "not a JSON bool", id="json-bool"),
            pytest.param(Decimal("1e40"), "out of range", id="python-decimal-too-large"),
        ],
    )
    def test_refused(self, raw: object, match: str) -> None:
        """Exponents, too many digits, non-finite values and JSON numbers are refused
        before any arithmetic."""
        with pytest.raises(ValidationError, match=match):
            DECIMAL.validate_python(raw)


class TestPeriodName:
    """Billing periods: YYYY-MM or YYYY, 1970-2299."""

    @pytest.mark.parametrize(
        ("raw", "parts"),
        [
            pytest.param("2026-11", (2026, 11), id="month"),
            pytest.param("2026", (2026, None), id="year"),
            pytest.param("1970-01", (1970, 1), id="first"),
            pytest.param("2299-12", (2299, 12), id="last"),
        ],
    )
    def test_accepted(self, raw: str, parts: tuple[int, int | None]) -> None:
        """A month or a year in range; ``period_parts`` splits it."""
        assert period_parts(PERIOD.validate_python(raw)) == parts

    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param("0001", id="year-1"),
            pytest.param("9999-12", id="year-9999"),
            pytest.param("0999-01", id="year-below-1000"),
            pytest.param("1969-12", id="before-1970"),
            pytest.param("2300-01", id="after-2299"),
            pytest.param("2026-13", id="month-13"),
            pytest.param("2026-00", id="month-0"),
            pytest.param("2026-1", id="one-digit-month"),
            pytest.param("2026-11\n", id="trailing-newline"),
            pytest.param("\u0662\u0660\u0662\u0666", id="arabic-indic-digits"),
            pytest.param("", id="empty"),
        ],
    )
    def test_refused(self, raw: str) -> None:
        """Anything else is a validation error that says what a period looks like."""
        with pytest.raises(ValidationError, match="is not YYYY-MM or YYYY"):
            PERIOD.validate_python(raw)
