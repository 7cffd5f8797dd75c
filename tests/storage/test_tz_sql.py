"""The store's tz rules do not matter: no SQL of ``storage/`` takes a timezone, so windows
come only from the pinned tz database (``schemas.tz``, bounds in ``storage.windows``).

Two checks: every string literal of every module in ``storage/`` (docstrings aside) is
scanned for timezone-taking SQL -- a ``{tz:String}``-like parameter, ``toTimeZone`` and its
kin, a zone name other than UTC, a date function given a timezone argument -- and a usage
answer is the same whatever session timezone the store runs its queries in.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import storage.usage_reads
from schemas.catalog import CustomerSpec, DeviceSpec, MeterKind, MeterSpec
from schemas.usage import Window
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from storage.usage import UsageQuery

STORAGE = Path(storage.usage_reads.__file__).resolve().parent

# Date functions whose last optional argument is a timezone, with the number of arguments
# they take without one (toDateTime64(x, 3) takes two; toStartOfDay(x) one).
_DATE_FUNCTIONS = {
    **dict.fromkeys(["toDateTime64", "toStartOfInterval", "formatDateTime", "dateTrunc"], 2),
    **dict.fromkeys(["date_trunc", "toStartOfWeek", "toWeek", "toYearWeek", "toStartOfDay"], 1),
    **dict.fromkeys(["toLastDayOfWeek", "parseDateTime", "parseDateTimeBestEffort"], 1),
}
_DATE_FUNCTION = re.compile(
    r"\b(toStartOf\w+|toDate\w*|toDateTime\w*|toYYYY\w*|toYear|toQuarter|toMonth|toDayOf\w+"
    r"|toHour|toMinute|toSecond|toMonday|toISO\w+|toRelative\w+|toUnixTimestamp|toString"
    r"|formatDateTime|dateTrunc|date_trunc|toWeek|toYearWeek|toLastDayOfWeek|parseDateTime\w*"
    r"|fromUnixTimestamp\w*|toTime)\s*\("
)
_ALWAYS = re.compile(
    r"\{\s*\w*(tz|zone)\w*\s*:"  # a timezone parameter
    r"|\b(toTimeZone|toTimezone|timeZone|timezone|serverTimeZone|serverTimezone|timeZoneOf"
    r"|timezoneOf|timeZoneOffset|timezoneOffset|toUTCTimestamp|fromUTCTimestamp)\s*\("
    r"|session_timezone"
    r"|'(?!UTC')[A-Za-z]+/[A-Za-z_+/-]+'",  # a zone name such as 'Europe/Amsterdam'
    re.IGNORECASE,
)


def _arguments(sql: str, open_at: int) -> list[str]:
    """The top-level arguments of the call whose '(' is at ``open_at``."""
    depth, start, found = 0, open_at + 1, []
    for i in range(open_at, len(sql)):
        char = sql[i]
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth == 0:
                found.append(sql[start:i])
                return [a.strip() for a in found if a.strip()]
        elif char == "," and depth == 1:
            found.append(sql[start:i])
            start = i + 1
    return found  # an unclosed call: a fragment of SQL built in pieces


def tz_uses(sql: str) -> list[str]:
    """The timezone-taking parts of ``sql``."""
    uses = [m.group(0) for m in _ALWAYS.finditer(sql)]
    for match in _DATE_FUNCTION.finditer(sql):
        name = match.group(1)
        args = _arguments(sql, match.end() - 1)
        plain = _DATE_FUNCTIONS.get(name, 1)
        if len(args) > plain and args[-1] != "'UTC'":
            uses.append(f"{name}({', '.join(args)})")
    return uses


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, nodes) and node.body and isinstance(node.body[0], ast.Expr):
            found.add(id(node.body[0].value))
    return found


def sql_strings(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every string literal in ``path`` but docstrings; an f-string as its
    literal parts joined (``{{x}}`` in an f-string is the parameter ``{x}``)."""
    tree = ast.parse(path.read_text())
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
            yield node.lineno, " ? ".join(str(p) for p in parts)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


class TestDetector:
    """The scan recognises timezone-taking SQL (so a pass means something)."""

    @pytest.mark.parametrize(
        "sql",
        [
            "toUnixTimestamp(toStartOfHour(r.at, {tz:String}))",  # the old bucket SQL
            "toDateTime(toStartOfMonth(r.at, {tz:String}), {tz:String})",
            "toStartOfDay(at, 'Europe/Amsterdam')",
            "toStartOfDay(at, {zone:String})",
            "toTimeZone(at, 'Asia/Kathmandu')",
            "toDateTime64(x, 3, 'America/St_Johns')",
            "formatDateTime(at, '%F', 'Australia/Lord_Howe')",
            "toDate(at, 'Asia/Tokyo')",
            "SELECT timezone()",
            "toStartOfInterval(at, INTERVAL 1 DAY, 'Europe/Paris')",
            "at DateTime64(3, 'Pacific/Chatham')",
        ],
    )
    def test_flags_timezone_sql(self, sql: str) -> None:
        """SQL that takes a timezone is found."""
        assert tz_uses(sql)

    @pytest.mark.parametrize(
        "sql",
        [
            "toStartOfHour(at)",
            "toDateTime64('2026-01-01', 3, 'UTC')",
            "fromUnixTimestamp64Milli(start_ms, 'UTC')",
            "at < {to:DateTime64(3, 'UTC')}",
            "toStartOfInterval(at, INTERVAL 1 HOUR)",
            "toUnixTimestamp64Milli(at)",
        ],
    )
    def test_passes_utc_sql(self, sql: str) -> None:
        """SQL in UTC, or in no timezone at all, is not flagged."""
        assert tz_uses(sql) == []


class TestStorageSql:
    """No SQL in storage/ uses a timezone."""

    def test_no_module_takes_a_timezone(self) -> None:
        """Every SQL string of every storage module is free of timezone-taking SQL."""
        paths = sorted(STORAGE.rglob("*.py"))
        assert STORAGE / "usage_reads.py" in paths
        found = [
            f"{path.name}:{line}: {use}"
            for path in paths
            for line, text in sql_strings(path)
            for use in tz_uses(text)
        ]
        assert found == []

    def test_usage_sql_is_scanned(self) -> None:
        """The scan reads the usage SQL itself (its ASOF JOIN on the window starts)."""
        texts = [text for _, text in sql_strings(STORAGE / "usage_reads.py")]
        assert any("{starts:Array(Int64)}" in text for text in texts)


NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.integration
class TestSessionTimezone:
    """A usage answer does not depend on the timezone ClickHouse runs in."""

    async def test_same_answer_in_any_session_timezone(
        self, store: ClickHouseStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Hour, day and month buckets in Lord Howe are equal whatever the session timezone."""
        await store.put_meter("beats", MeterSpec(unit="beat", kind=MeterKind.DELTA), NOW)
        await store.put_customer("session", CustomerSpec(name="Session"), NOW)
        since = datetime(2026, 1, 1, tzinfo=UTC)
        spec = DeviceSpec(kind="door", customer_id="session", assigned_from=since)
        await store.put_device("session-1", spec, NOW)
        start = datetime(2026, 4, 4, tzinfo=UTC)
        rows = [
            ReadingRow("session-1", n, 0, "beats", at, Decimal(1), at, at, 0)
            for n, at in enumerate((start + timedelta(minutes=10 * k) for k in range(600)), 1)
        ]
        await store.insert_readings(rows)
        meter = await store.get_meter("beats")
        answers = []
        for session_tz in ("UTC", "Australia/Lord_Howe", "America/St_Johns", "Asia/Kathmandu"):
            settings = {**storage.usage_reads.READ_SETTINGS, "session_timezone": session_tz}
            monkeypatch.setattr("storage.usage.READ_SETTINGS", settings)
            answer = []
            for window in Window:
                q = UsageQuery("session", meter, start, NOW, window, "Australia/Lord_Howe")
                answer.append([(b.bucket, b.readings) for b in (await store.usage(q)).buckets])
            answers.append(answer)
        assert answers[0][0][:3] == [
            (start, 6),  # Lord Howe was at +11 until 15:00Z
            (start + timedelta(hours=1), 6),
            (start + timedelta(hours=2), 6),
        ]
        assert all(answer == answers[0] for answer in answers[1:])
