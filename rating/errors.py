"""Errors of the pricing engine: one base class, the hierarchy drawn here.

::

    RatingError(ValueError)          anything the engine refuses to price
    ├── InvalidQuantity              a priced meter's quantity is negative, not finite or too large
    ├── InvalidFraction              fee_fraction or a segment's share is outside [0, 1]
    └── InvalidSegments              rate_segments got no segments, or shares summing above 1
        └── CurrencyMismatch         the segments' plans are priced in different currencies

An invalid plan (unsorted tiers, no open-ended last tier, a negative price, two charges for
one meter, minimum above maximum) never reaches the engine: building ``PlanSpec`` or a
``Charge`` raises pydantic's ``ValidationError`` (also a ``ValueError``), whose messages
say what to fix. Nothing here is retriable: the engine is pure, so the same input fails
the same way every time.
"""

from __future__ import annotations


class RatingError(ValueError):
    """The engine cannot price this input; the message says why."""


class InvalidQuantity(RatingError):
    """A priced meter's quantity is negative, not finite, or at least 1e29."""


class InvalidFraction(RatingError):
    """A fee fraction or a segment's share of the period is outside [0, 1]."""


class InvalidSegments(RatingError):
    """The segments of a period cannot be combined into one rating."""


class CurrencyMismatch(InvalidSegments):
    """The plans of one period's segments are priced in different currencies."""
