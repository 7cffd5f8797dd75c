"""The one tz database: zones and zone names come from the pinned ``tzdata`` package only,
never from the machine's ``/usr/share/zoneinfo``."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest

from schemas import tz
from schemas.inputs import check_timezone


@pytest.fixture
def no_system_tz() -> Iterator[None]:
    """No system tz database at all for the test, and no zone cached from one."""
    tz.zone.cache_clear()
    zoneinfo.reset_tzpath(to=["/nonexistent/zoneinfo"])
    yield
    zoneinfo.reset_tzpath()
    tz.zone.cache_clear()


class TestZone:
    """``zone`` reads the pinned package."""

    @pytest.mark.usefixtures("no_system_tz")
    def test_works_without_a_system_database(self) -> None:
        """Zones load with the system tz path pointing nowhere."""
        assert datetime(2026, 7, 1, tzinfo=UTC).astimezone(
            tz.zone("Europe/Amsterdam")
        ).utcoffset() == timedelta(hours=2)

    def test_carries_the_pinned_rules(self) -> None:
        """British Columbia stays on -07:00 after 1 November 2026 (IANA 2026f), which an
        older system database (Debian's 2025b: -08:00) does not know."""
        winter = datetime(2026, 11, 15, 12, tzinfo=UTC).astimezone(tz.zone("America/Vancouver"))
        assert winter.utcoffset() == -timedelta(hours=7)

    def test_one_object_per_zone(self) -> None:
        """A zone is loaded once: every datetime of it shares one tzinfo."""
        assert tz.zone("Asia/Kathmandu") is tz.zone("Asia/Kathmandu")
        assert tz.zone("Asia/Kathmandu").key == "Asia/Kathmandu"

    @pytest.mark.parametrize(
        "name", ["Factory", "Etc", "../../etc/passwd", "zone.tab", "Mars/Base", "posix/UTC"]
    )
    def test_unknown_names(self, name: str) -> None:
        """A name not in the package's list is UnknownTimezone, never opened as a path."""
        with pytest.raises(tz.UnknownTimezone, match="unknown IANA timezone"):
            tz.zone(name)


class TestZoneNames:
    """The list of valid zones is the package's."""

    def test_is_the_package_list(self) -> None:
        """Every name listed by the package but Factory, links such as US/Eastern included."""
        listed = set(resources.files("tzdata").joinpath("zones").read_text().split())
        assert tz.zone_names() == listed - {"Factory"}
        assert {"US/Eastern", "Europe/Kyiv", "UTC"} <= tz.zone_names()

    @pytest.mark.usefixtures("no_system_tz")
    def test_every_name_loads(self) -> None:
        """Each listed name opens from the package, without a system database."""
        assert all(tz.zone(name).key == name for name in tz.zone_names())

    def test_validation_uses_the_list(self) -> None:
        """The API's zone check accepts exactly the listed names."""
        assert check_timezone("America/Argentina/Salta") == "America/Argentina/Salta"
        with pytest.raises(ValueError, match="unknown IANA timezone"):
            check_timezone("Factory")


class TestVersion:
    """The version in use is known and is the pinned one."""

    def test_version_is_pinned(self) -> None:
        """The installed tzdata is the version pyproject.toml pins, with its IANA name."""
        version = tz.database_version()
        assert version["tzdata"] == version["pinned"]
        assert version["iana"][:4] == version["tzdata"][:4]
