"""Cursor pagination, Stripe's way, for every list: ``limit`` (1-1000, default 100) items
after the item ``starting_after`` names (an id from the page before), and ``has_more``.
A list is in a stable order (by id, or by time and then id), so a cursor is an item's
position, wherever new items land; one that names no item of the list is a 400
``invalid_cursor``, never a silently empty page."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Query

from api.errors import ApiProblem, responses
from schemas.catalog import Page

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cursor:
    """``limit`` and ``starting_after`` of a list request."""

    limit: int
    starting_after: str | None

    def page(self, items: Sequence[T], id_of: Callable[[T], str]) -> tuple[list[T], bool]:
        """The page of ``items`` (in list order) and whether more follow it."""
        start = 0
        if self.starting_after is not None:
            at = next((i for i, x in enumerate(items) if id_of(x) == self.starting_after), None)
            if at is None:
                raise ApiProblem(
                    400,
                    "invalid_cursor",
                    f"starting_after {self.starting_after!r} is not an item of this list; "
                    "pass the id of the last item of the page before",
                )
            start = at + 1
        rest = items[start:]
        return list(rest[: self.limit]), len(rest) > self.limit

    def answer(self, items: Sequence[T], id_of: Callable[[T], str]) -> Page[T]:
        """The page of ``items`` as a list response."""
        page, more = self.page(items, id_of)
        return Page[T](items=page, count=len(page), has_more=more)


async def cursor(
    limit: Annotated[int, Query(ge=1, le=1000, description="items per page")] = 100,
    starting_after: Annotated[
        str | None,
        Query(
            min_length=1, max_length=300, description="the id of the last item of the page before"
        ),
    ] = None,
) -> Cursor:
    """The pagination parameters of a list route."""
    return Cursor(limit, starting_after)


CursorDep = Annotated[Cursor, Depends(cursor)]
CURSOR_NOTE = "`invalid_cursor`: `starting_after` names no item of the list"
"""The 400 every paginated list documents."""
CURSOR_ERRORS = responses(400, notes={400: CURSOR_NOTE})
