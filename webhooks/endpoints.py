"""Webhook endpoints: create, change, rotate the secret, resend an event.

A secret is made here and shown once (on create and on rotate). A rotation keeps the old
secret signing beside the new one for ``ROTATION_OVERLAP`` (24 h), so a receiver can
switch without losing a delivery: during the overlap every request carries both
signatures. Enabling a disabled endpoint starts its failure clock afresh; its pending
deliveries go on where they were. A resend makes a new generation of the event's delivery
to the endpoint -- attempt 1 at once, the schedule again -- with the same ``webhook-id``,
so a receiver that has it already can tell."""

from __future__ import annotations

import secrets as random
from datetime import datetime, timedelta

from schemas.webhooks import (
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointSecret,
    EndpointSpec,
    EndpointStatus,
)
from storage.webhooks import Secret
from webhooks.ports import WebhookStore
from webhooks.sender import stamp
from webhooks.signing import new_secret

ROTATION_OVERLAP = timedelta(hours=24)


def _status(spec: EndpointSpec) -> EndpointStatus:
    return EndpointStatus.ENABLED if spec.enabled else EndpointStatus.DISABLED


async def create_endpoint(store: WebhookStore, spec: EndpointSpec, now: datetime) -> EndpointSecret:
    """A new endpoint with a new secret; it gets the events made from now on."""
    endpoint = Endpoint(
        endpoint_id=f"we_{random.token_hex(8)}",
        url=str(spec.url),
        description=spec.description,
        event_types=spec.event_types,
        status=_status(spec),
        disabled_reason=None if spec.enabled else "disabled when created",
        created_at=now,
        enabled_at=now if spec.enabled else None,
        updated_at=stamp(),
    )
    secret = new_secret()
    await store.put_endpoint(endpoint, [Secret(secret, None)])
    return EndpointSecret(endpoint=endpoint, secret=secret)


async def update_endpoint(
    store: WebhookStore, endpoint_id: str, spec: EndpointSpec, now: datetime
) -> Endpoint:
    """Change the URL, description, types or enabled state (the secrets stay)."""
    current, secrets = await store.get_endpoint(endpoint_id)
    status = _status(spec)
    reason = (
        None
        if status is EndpointStatus.ENABLED
        else current.disabled_reason
        if current.status is EndpointStatus.DISABLED
        else "disabled by an operator"
    )
    changed = current.model_copy(
        update={
            "url": str(spec.url),
            "description": spec.description,
            "event_types": spec.event_types,
            "status": status,
            "disabled_reason": reason,
            "enabled_at": now
            if status is EndpointStatus.ENABLED and current.status is EndpointStatus.DISABLED
            else current.enabled_at,
            "updated_at": stamp(),
        }
    )
    await store.put_endpoint(changed, secrets)
    return changed


async def rotate_secret(store: WebhookStore, endpoint_id: str, now: datetime) -> EndpointSecret:
    """A new secret; the current one signs too for ``ROTATION_OVERLAP``, older ones stop."""
    current, secrets = await store.get_endpoint(endpoint_id)
    live = [s for s in secrets if s.expires_at is None]
    expires = now + ROTATION_OVERLAP
    secret = new_secret()
    kept = [Secret(s.secret, expires) for s in live[-1:]]
    await store.put_endpoint(
        current.model_copy(update={"updated_at": stamp()}), [Secret(secret, None), *kept]
    )
    return EndpointSecret(
        endpoint=current, secret=secret, previous_secret_expires_at=expires if kept else None
    )


async def resend(store: WebhookStore, endpoint_id: str, event_id: str, now: datetime) -> Delivery:
    """Deliver the event to the endpoint again from attempt 1, whatever happened before."""
    await store.get_endpoint(endpoint_id)
    event = await store.get_event(event_id)
    before = await store.get_delivery(endpoint_id, event_id)
    delivery = Delivery(
        endpoint_id=endpoint_id,
        event_id=event_id,
        event_type=event.type,
        generation=0 if before is None else before.generation + 1,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        last_status_code=None,
        last_error="",
        updated_at=stamp(),
    )
    await store.put_delivery(delivery)
    return delivery
