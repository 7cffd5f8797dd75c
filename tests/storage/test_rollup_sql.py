"""The rollup SQL's own quoting of plain names (``storage.rollup_sql.literal``) writes what
clickhouse-connect writes, for any string or tuple of strings."""

from __future__ import annotations

from clickhouse_connect.driver.binding import format_query_value
from hypothesis import given
from hypothesis import strategies as st

from storage.rollup_sql import literal

PLAIN = st.from_regex(r"[A-Za-z0-9._:-]{0,12}", fullmatch=True)
ANY = st.text(max_size=12)


class TestLiteral:
    """Quoting that skips the library only where nothing needs escaping."""

    @given(st.one_of(PLAIN, ANY))
    def test_a_string(self, value: str) -> None:
        """A plain or arbitrary string is quoted as the library quotes it."""
        assert literal(value) == str(format_query_value(value))

    @given(st.lists(st.one_of(PLAIN, ANY), max_size=5).map(tuple))
    def test_a_tuple_of_strings(self, value: tuple[str, ...]) -> None:
        """A tuple (an IN list) is quoted as the library quotes it, also with one element,
        none, or an element that needs escaping."""
        assert literal(value) == str(format_query_value(value))
