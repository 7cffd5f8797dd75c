"""Webhooks: outbox events delivered to subscribed endpoints, signed per Standard Webhooks,
retried on Svix's schedule, logged per attempt (``webhooks/sender.py``)."""
