"""The one tz database of Telemeter: the ``tzdata`` package pinned in ``pyproject.toml``.

Every zone the project uses comes from :func:`zone`, and the names it accepts from
:func:`zone_names`; both read that package only, never the machine's
``/usr/share/zoneinfo``. Why: window bounds decide which window a reading is billed in, so
they must not change with the operating system's tzdata (Debian's lagged the rules
ClickHouse carries by a year, and seven zones then disagreed with their own windows).
With the package pinned, a rule change reaches the answers only in a commit that bumps it.

How: ``ZoneInfo.from_file`` on the package's compiled file, one object per name (cached,
so every datetime of a zone shares one ``tzinfo``, as with ``ZoneInfo(name)``). Not
``zoneinfo.reset_tzpath(to=[])``: that is process-wide state any library can set back,
``ZoneInfo(name)`` keeps serving zones it cached from the system path before the reset,
and ``PYTHONTZPATH`` is read at import. ``from_file`` depends on none of that. The price:
such zones cannot be pickled (they are used inside a computation, never stored).
"""

from __future__ import annotations

import functools
from importlib import metadata, resources
from zoneinfo import ZoneInfo

import tzdata

PACKAGE = "tzdata"
NOT_PLACES = frozenset({"Factory"})
"""Names of the database that are not a place: ``Factory`` ("-00") marks a machine whose
zone was never set."""


class UnknownTimezone(ValueError):
    """A name that is not a zone of the pinned tz database."""

    def __init__(self, name: str) -> None:
        shown = name if len(name) <= 40 else name[:37] + "..."
        super().__init__(f"unknown IANA timezone {shown!r} (e.g. 'Europe/Amsterdam')")
        self.name = name


@functools.cache
def zone_names() -> frozenset[str]:
    """Every zone of the pinned database (canonical zones and their links, such as
    ``US/Eastern``), less the names that are not places (:data:`NOT_PLACES`)."""
    listed = resources.files(PACKAGE).joinpath("zones").read_text(encoding="utf-8")
    return frozenset(listed.split()) - NOT_PLACES


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The zone ``name`` from the pinned database; :class:`UnknownTimezone` for a name it
    does not list (the name is looked up in the list first, never opened as a path)."""
    if name not in zone_names():
        raise UnknownTimezone(name)
    compiled = resources.files(f"{PACKAGE}.zoneinfo").joinpath(*name.split("/"))
    with compiled.open("rb") as data:
        return ZoneInfo.from_file(data, key=name)


def database_version() -> dict[str, str]:
    """Which tz database is in use: the package's version (``2026.6``), the IANA release it
    carries (``2026f``) and the version ``pyproject.toml`` pins (from the installed
    project's metadata; ``unknown`` when it is not installed)."""
    return {
        "tzdata": tzdata.__version__,
        "iana": tzdata.IANA_VERSION,
        "pinned": _pinned(),
    }


def _pinned() -> str:
    try:
        required = metadata.requires("telemeter") or []
    except metadata.PackageNotFoundError:
        return "unknown"
    for requirement in required:
        name, _, rest = requirement.partition("==")
        if name.strip() == PACKAGE and rest:
            return rest.split(";")[0].strip()
    return "unknown"
