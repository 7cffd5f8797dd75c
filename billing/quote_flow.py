"""Quotes as a workflow for inside sales: ``draft -> sent -> accepted | declined``, and
``expired`` for a draft or sent quote past its ``valid_until`` (``billing/quotes.py``
prices and accepts them).

Sending writes ``quote.sent`` to the outbox before the quote's new state, with the id
``evt_quote.sent_<quote>``: a send that dies between the two is completed by the next,
and the webhook goes out once. Sending a sent quote again changes nothing (the customer
has it). Declining -- by the customer's own key, or by staff on its behalf -- writes
``quote.declined`` the same way. Accepted and declined quotes are closed."""

from __future__ import annotations

import json
from datetime import datetime

from billing.errors import QuoteAlreadyAccepted, QuoteClosed, QuoteExpired
from billing.ports import Outbox, Quotes
from schemas.quotes import OPEN, Quote, QuoteStatus, parse_time
from schemas.telemetry import format_time
from storage.errors import NotFound


def effective(quote: Quote, now: datetime) -> Quote:
    """The quote as it stands at ``now``: a draft or sent quote past ``valid_until`` is
    ``expired``."""
    if quote.status in OPEN and now > parse_time(quote.valid_until):
        return quote.model_copy(update={"status": QuoteStatus.EXPIRED})
    return quote


async def get_quote(
    quotes: Quotes, quote_id: str, now: datetime, by_customer: str | None = None
) -> Quote:
    """One quote as it stands; a customer sees only its own (another's is not found)."""
    quote = await quotes.get_quote(quote_id)
    if by_customer is not None and quote.customer_id != by_customer:
        raise NotFound(f"quote {quote_id!r} does not exist")
    return effective(quote, now)


async def list_quotes(
    quotes: Quotes, now: datetime, customer_id: str | None = None, status: QuoteStatus | None = None
) -> list[Quote]:
    """Quotes newest first, as they stand at ``now`` (of ``customer_id``, in ``status``)."""
    found = [effective(q, now) for q in await quotes.list_quotes(customer_id=customer_id)]
    return [q for q in found if status is None or q.status is status]


def _check_open(quote: Quote, now: datetime) -> None:
    if quote.status is QuoteStatus.ACCEPTED:
        raise QuoteAlreadyAccepted(f"quote {quote.quote_id} was accepted at {quote.accepted_at}")
    if quote.status is QuoteStatus.DECLINED:
        raise QuoteClosed(f"quote {quote.quote_id} was declined at {quote.declined_at}")
    if now > parse_time(quote.valid_until):
        raise QuoteExpired(
            f"quote {quote.quote_id} expired at {quote.valid_until}; ask for a new quote"
        )


async def send_quote(quotes: Quotes, outbox: Outbox, quote_id: str, now: datetime) -> Quote:
    """Send a draft to its customer (``quote.sent``); a sent one stays as it is."""
    quote = await quotes.get_quote(quote_id)
    _check_open(quote, now)
    if quote.status is QuoteStatus.SENT:
        return quote
    sent = quote.model_copy(update={"status": QuoteStatus.SENT, "sent_at": format_time(now)})
    payload = json.dumps(sent.model_dump(mode="json"))
    await outbox.put_event(f"evt_quote.sent_{quote_id}", "quote.sent", quote_id, payload, now)
    await quotes.put_quote(sent, now)
    return sent


async def decline_quote(
    quotes: Quotes, outbox: Outbox, quote_id: str, now: datetime, by_customer: str | None = None
) -> Quote:
    """Decline an open quote (``quote.declined``); a customer declines only its own."""
    quote = await quotes.get_quote(quote_id)
    if by_customer is not None and quote.customer_id != by_customer:
        raise NotFound(f"quote {quote_id!r} does not exist")
    _check_open(quote, now)
    declined = quote.model_copy(
        update={"status": QuoteStatus.DECLINED, "declined_at": format_time(now)}
    )
    payload = json.dumps(declined.model_dump(mode="json"))
    await outbox.put_event(
        f"evt_quote.declined_{quote_id}", "quote.declined", quote_id, payload, now
    )
    await quotes.put_quote(declined, now)
    return declined
