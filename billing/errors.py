"""Errors of the billing use cases: one base class, the hierarchy drawn here. Each carries
a stable ``code``; ``api/errors.py`` maps each class to an HTTP status in one table.
::

    BillingError                      a billing rule refuses the request
    ├── NoSubscription                the customer has no subscription in the period
    ├── InvalidPeriod                 the range asked for is not one the plan bills
    ├── WrongCurrency                 a plan or quote priced in another currency
    ├── UnknownCharge                 quantities for a meter the plan does not charge
    ├── PlansNotComparable            no plan given, or plans with different periods
    ├── ReservedPlanId                a plan id the API uses for something else
    ├── CustomerRequired              a prospect's quote accepted without a customer
    ├── QuoteNotAcceptable            the quote cannot become an order (409)
    │   ├── QuoteExpired
    │   ├── QuoteAlreadyAccepted
    │   ├── QuoteClosed               accepted or declined: nothing more happens to it
    │   └── QuoteNotSent              a customer accepts only what was sent to it
    ├── PeriodNotEnded                a period is closed before it has ended (409)
    ├── VoidRefused                   readings are not voided
    │   ├── AlreadyVoided             they are voided already (409)
    │   └── TooManyReadings           more than one void may take (422)
    ├── InvalidRule                   an alert rule the catalog does not allow (422)
    ├── PlanCannotRate                the engine refused a plan's quantities
    └── ReplayRefused                 a dead letter is not published (409 or 503)
        ├── AlreadyReplayed
        ├── ReplayInProgress          another replay of this letter holds its claim
        ├── StillInvalid              the message is still rejected (``reason``, ``detail``)
        └── ReplayUnavailable         this process has no Kafka publisher

Nothing here is retriable except ``ReplayInProgress`` and ``ReplayUnavailable``, which a
later attempt may pass."""

from __future__ import annotations


class BillingError(Exception):
    """A billing rule refuses the request; the message says why and how to fix it."""

    code = "billing_error"
    retriable = False

    def extra(self) -> dict[str, object]:
        """Fields the error body carries beside ``code`` and ``message``."""
        return {}


class NoSubscription(BillingError):
    """The customer has no subscription in the period asked for."""

    code = "no_subscription"


class InvalidPeriod(BillingError):
    """The range asked for is incomplete, or not one billing period of the plan."""

    code = "invalid_period"


class WrongCurrency(BillingError):
    """A plan or a quote is priced in another currency than the customer is billed in."""

    code = "wrong_currency"


class UnknownCharge(BillingError):
    """Quantities were given for a meter the plan has no charge for."""

    code = "unknown_charge"


class PlansNotComparable(BillingError):
    """No plan to compare, or plans whose billing periods differ."""

    code = "plans_not_comparable"


class ReservedPlanId(BillingError):
    """The plan id is a path the API uses for something else."""

    code = "reserved_plan_id"


class CustomerRequired(BillingError):
    """A quote for a prospect is accepted without naming the customer it now is."""

    code = "customer_required"


class QuoteNotAcceptable(BillingError):
    """The quote cannot become an order."""

    code = "quote_not_acceptable"


class QuoteExpired(QuoteNotAcceptable):
    """The quote's validity has passed."""

    code = "quote_expired"


class QuoteAlreadyAccepted(QuoteNotAcceptable):
    """The quote was accepted already (by this caller or another)."""

    code = "quote_already_accepted"


class QuoteClosed(QuoteNotAcceptable):
    """The quote was accepted or declined: it is not sent, accepted or declined again."""

    code = "quote_closed"


class QuoteNotSent(QuoteNotAcceptable):
    """A customer accepts a quote once it was sent to it (a draft is not an offer)."""

    code = "quote_not_sent"


class PeriodNotEnded(BillingError):
    """A billing period cannot close before it ends."""

    code = "period_not_ended"


class VoidRefused(BillingError):
    """Readings are not voided."""

    code = "void_refused"


class AlreadyVoided(VoidRefused):
    """The readings named are voided already (``void_ids``: by which voids)."""

    code = "already_voided"

    def __init__(self, message: str, void_ids: list[str]) -> None:
        super().__init__(message)
        self.void_ids = void_ids

    def extra(self) -> dict[str, object]:
        """The voids that hold the readings."""
        return {"void_ids": self.void_ids}


class TooManyReadings(VoidRefused):
    """The range names more readings than one void may take."""

    code = "too_many_readings"


class InvalidRule(BillingError):
    """An alert rule whose basis the meter cannot have."""

    code = "invalid_rule"


class InvalidConsumable(BillingError):
    """A consumable the device kind or the meter's kind cannot have."""

    code = "invalid_consumable"


class PlanCannotRate(BillingError):
    """The pricing engine refused a plan's quantities (``rating.errors`` says why)."""

    code = "rating_failed"


class ReplayRefused(BillingError):
    """A dead letter is not published."""

    code = "replay_refused"


class AlreadyReplayed(ReplayRefused):
    """The dead letter was replayed already."""

    code = "already_replayed"


class ReplayInProgress(ReplayRefused):
    """Another replay of the dead letter holds its claim right now."""

    code = "replay_in_progress"
    retriable = True


class StillInvalid(ReplayRefused):
    """The message is still rejected, for ``reason`` with ``detail``."""

    code = "still_invalid"

    def __init__(self, message: str, reason: str, detail: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.detail = detail

    def extra(self) -> dict[str, object]:
        """The reject reason code and its detail."""
        return {"reason": self.reason, "detail": self.detail}


class ReplayUnavailable(ReplayRefused):
    """This process cannot publish (it runs without Kafka)."""

    code = "replay_unavailable"
    retriable = True
