"""FastAPI dependencies as ``Annotated`` aliases: the store, the clock, who is calling.

Authentication happens once, in ``api/middleware.py``, before a request body is read: the
bearer token becomes a :class:`Principal` (the admin token, a staff token with a role, or a
customer API key) or the request is a 401. The dependencies here only decide whether that
principal may call the route:

- ``Admin``: the admin token or an ``admin`` staff token;
- ``Provisioner``: those, or a ``provisioner`` staff token (devices and credentials);
- ``Sales``: those admins, or a ``sales`` staff token (insights, usage, quotes);
- ``CustomerReader``: those admins or a ``sales`` staff token, or the ``{customer_id}``'s
  own API key (its usage, rated usage, invoice preview and quotes).

Anyone authenticated but not allowed gets a 403, not a 401: the caller is known."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPBearer
from pydantic import SecretStr

from aggregator.devices import DeviceRulesCache
from api.cache import ResponseCache
from api.catalog import CatalogCache
from billing.replay import EventPublisher, Replayer
from identity.ca import DeviceCa
from identity.errors import CaUnavailable
from identity.service import DeviceCredentials
from ingest.validation import TelemetryValidator
from schemas.catalog import CUSTOMER_ID_PATTERN
from schemas.identity import StaffRole
from storage.store import ClickHouseStore

EventReplay = EventPublisher


@dataclass
class ApiContext:
    """What the routes need, built once by the composition root.

    ``validator`` carries the bridge's settings (topic prefix, payload limit, time bounds)
    so that a replay applies the rules the bridge applies; ``device_rules`` the
    aggregator's. ``replay`` publishes to the events topic; without it or the validator (an
    API running without Kafka) replays answer 503: no default rules are assumed.
    ``credentials`` issues device credentials and keeps the broker in step. ``cache`` keeps
    usage and rated-usage answers per data version (``api/cache.py``), ``catalog`` their
    catalog lookups per catalog version (``api/catalog.py``)."""

    store: ClickHouseStore
    admin_token: SecretStr | str
    clock: Callable[[], datetime]
    credentials: DeviceCredentials | None = None
    kafka_check: Callable[[], Awaitable[None]] | None = None
    validator: TelemetryValidator | None = None
    device_rules: DeviceRulesCache | None = None
    replay: EventReplay | None = None
    cache: ResponseCache = field(default_factory=ResponseCache)
    catalog: CatalogCache = field(default_factory=CatalogCache)
    metrics_token: SecretStr | None = None
    max_body_bytes: int = 4 * 2**20
    max_in_flight: int = 256

    def __post_init__(self) -> None:
        if isinstance(self.admin_token, str):
            self.admin_token = SecretStr(self.admin_token)
        if self.device_rules is None:
            self.device_rules = DeviceRulesCache(self.store)
        if self.credentials is None:  # credentials in the store only: no broker, no CA
            self.credentials = DeviceCredentials(
                store=self.store, broker=None, ca=_no_ca, clock=self.clock
            )

    @property
    def replayer(self) -> Replayer | None:
        """What a dead-letter replay needs, or None: this process publishes no replays
        (no Kafka publisher, or no bridge rules to check the message with)."""
        if self.replay is None or self.validator is None or self.device_rules is None:
            return None
        return Replayer(self.validator, self.device_rules, self.replay)

    @property
    def admin_secret(self) -> str:
        """The admin token's value (only for comparing it)."""
        token = self.admin_token
        return token.get_secret_value() if isinstance(token, SecretStr) else token


def _no_ca() -> DeviceCa:
    raise CaUnavailable("this API process has no device CA configured")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: the admin token, a staff token or a customer API key."""

    kind: Literal["admin", "staff", "customer"]
    name: str
    role: StaffRole | None = None  # staff tokens
    customer_id: str | None = None  # customer API keys

    @property
    def is_admin(self) -> bool:
        """The admin token or an admin staff token."""
        return self.kind == "admin" or self.role is StaffRole.ADMIN


async def authenticate(context: ApiContext, token: str) -> Principal | None:
    """The principal ``token`` belongs to, or None (no valid, unrevoked credential)."""
    if hmac.compare_digest(token.encode(), context.admin_secret.encode()):
        return Principal("admin", "admin token")
    if token.startswith("tms_"):
        staff = await context.store.authenticate_staff_token(token)
        return None if staff is None else Principal("staff", staff.name, role=staff.role)
    key = await context.store.authenticate_api_key(token)
    if key is None:
        return None
    return Principal("customer", key.name, customer_id=key.customer_id)


# The dependencies are ``async def`` although they do not await: FastAPI runs a plain
# ``def`` dependency in a worker thread, one thread hop per request for a dictionary lookup.
async def get_context(request: Request) -> ApiContext:
    """The context stored on the app."""
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


async def get_store(context: ContextDep) -> ClickHouseStore:
    """The store."""
    return context.store


StoreDep = Annotated[ClickHouseStore, Depends(get_store)]

# Only for the OpenAPI document (the security scheme); the middleware authenticates.
_bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <token>`: the admin token, a staff token `tms_...` "
    "(POST /v1/staff-tokens) with a role, or a customer API key `tmk_...` "
    "(POST /v1/customers/{customer_id}/api-keys) that reads only its own customer's usage, "
    "rated usage and invoice preview",
)
_CUSTOMER_SCOPE = "its own customer's usage, rated usage, invoice preview and quotes"


async def get_principal(request: Request, _doc: Annotated[object, Depends(_bearer)]) -> Principal:
    """The principal the middleware authenticated (every /v1 request has one)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # only reachable if a /v1 route is mounted outside the middleware
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def refuse(principal: Principal, needs: str) -> HTTPException:
    """The 403 for ``principal``, saying what the route needs."""
    if principal.kind == "customer":
        return HTTPException(
            403, f"this key can only read {_CUSTOMER_SCOPE}; this route needs {needs}"
        )
    return HTTPException(
        403, f"staff token {principal.name!r} has role {principal.role}; this route needs {needs}"
    )


async def require_admin(principal: PrincipalDep) -> None:
    """403 unless the admin token or an admin staff token."""
    if not principal.is_admin:
        raise refuse(principal, "the admin token or an admin staff token")


async def require_provisioner(principal: PrincipalDep) -> None:
    """403 unless an admin or a provisioner staff token."""
    if not (principal.is_admin or principal.role is StaffRole.PROVISIONER):
        raise refuse(principal, "the admin token or a staff token with role provisioner")


async def require_sales(principal: PrincipalDep) -> None:
    """403 unless an admin or a sales staff token."""
    if not (principal.is_admin or principal.role is StaffRole.SALES):
        raise refuse(principal, "the admin token or a staff token with role sales")


async def require_customer_reader(
    principal: PrincipalDep,
    customer_id: Annotated[
        str,
        Path(
            pattern=CUSTOMER_ID_PATTERN,
            examples=["acme"],
            description="the customer whose data is read",
        ),
    ],
) -> None:
    """For the routes a customer may read: an admin or a sales staff token, or an
    unrevoked API key of the ``{customer_id}`` in the path (403 for another customer's key
    or a provisioner)."""
    if principal.is_admin or principal.role is StaffRole.SALES:
        return
    if principal.kind != "customer":
        raise refuse(principal, "the admin token, a sales staff token or this customer's API key")
    if principal.customer_id != customer_id:
        raise HTTPException(
            403,
            f"this key belongs to customer {principal.customer_id!r}, not {customer_id!r}; it "
            f"can only read {_CUSTOMER_SCOPE}",
        )


Admin = Depends(require_admin)
Provisioner = Depends(require_provisioner)
Sales = Depends(require_sales)
"""An admin or a ``sales`` staff token: insights, customers' usage, quotes."""
CustomerReader = Depends(require_customer_reader)
"""An admin, or the ``{customer_id}``'s own API key (usage, rated usage, invoice preview)."""
