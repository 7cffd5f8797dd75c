"""The application layer: one use case per billing operation (rate a period, preview an
invoice, quote, accept a quote, compare plans, define a plan, change a subscription,
replay a dead letter).

Use cases are plain async functions over the small ports of :mod:`billing.ports`; they
raise the domain errors of :mod:`billing.errors` (and the store's ``NotFound``), never
HTTP status codes: ``api/errors.py`` maps every error to a status in one table.
:mod:`billing.memory` ships in-memory implementations of the ports for tests."""
