"""Schemathesis against the API's own OpenAPI document, over a real uvicorn socket: no
input gets a 5xx, and every answer is what the document says.

- Operations: every operation of the document with the admin token (``test_admin``); with a
  customer's API key (``test_customer``) the three it may read -- its usage, rated usage and
  invoice preview, with its own customer id, so they reach the pricing code -- and
  ``GET /v1/customers/{customer_id}``, which it must be refused (403).
- Cases per operation: the document's examples, schemathesis' coverage cases (boundary
  values, each required field missing, wrong types, ...) and ``EXAMPLES`` generated ones,
  valid and invalid, drawn deterministically (``derandomize``): every run sends the same
  requests. ``TELEMETER_FUZZ_EXAMPLES=200`` digs deeper locally.
- Checks: ``CHECKS`` below, with why each is on or off.
- Data: what the document's examples name is seeded (customer acme, plans printer-pro,
  basic and pro, devices printer-0042 and -0043, a subscription, readings, a quote, a dead
  letter), so the examples reach real code and not just 404s.

The server runs in a thread with its own event loop and store connection: schemathesis
calls it synchronously from the test, while pytest's event loop waits."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, settings

from api.app import create_app
from api.deps import ApiContext
from api.routes.plans import EXAMPLE as PLAN
from billing.alert_rules import create_rule
from billing.commands import create_command
from billing.voids import void_readings
from identity.ca import DeviceCa
from identity.dev_pki import ensure_ca
from identity.service import DeviceCredentials
from ingest.validation import TelemetryValidator
from schemas.alerts import AlertRuleSpec
from schemas.commands import CommandSpec
from schemas.dead_letter import DeadLetter, RejectReason
from schemas.orders import Order, OrderStatus
from schemas.quotes import Quote
from schemas.voids import VoidRequest
from schemas.webhooks import Endpoint, EndpointStatus
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from storage.webhooks import Secret
from telemeter.config import Settings
from tests.conftest import ADMIN_TOKEN, free_port
from webhooks.signing import new_secret

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # November has ended: it is closed below
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# The ids the OpenAPI document uses in its examples: seeded, so examples reach real code.
CUSTOMER, PLAN_ID, DEVICE = "acme", "printer-pro", "printer-0042"
LETTER = "5f1c0e3a9b7d4c2e8a6f1b3d"
QUOTES = ("q_3f9a1c0e5b7d2a64", "q_5e4d3c2b1a096857", "q_7a6b5c4d3e2f1908")
ENDPOINT = "we_3f9a1c0e5b7d2a64"
COMMAND = "cmd_3f9a1c0e5b7d2a64"  # the path example of the command routes
ORDER = "ord_3f9a1c0e5b7d2a64"
ALERT_EXAMPLE = AlertRuleSpec.model_json_schema()["examples"][0]


async def _published(key: bytes, value: bytes) -> None:
    """Replays "publish" to nowhere: the fuzz is about the API, not Kafka."""


def _context(store: ClickHouseStore, pki: Path | None = None) -> ApiContext:
    """The API's context at NOW, with a device CA in ``pki`` (certificates are issued)."""
    context = ApiContext(
        store=store,
        admin_token=ADMIN_TOKEN,
        clock=lambda: NOW,
        replay=_published,
        validator=TelemetryValidator(),  # the bridge's default rules
    )
    if pki is not None:
        ensure_ca(pki, NOW)
        context.credentials = DeviceCredentials(
            store=store,
            broker=None,
            ca=lambda: DeviceCa.load(pki / "ca.crt", pki / "ca.key"),
            clock=lambda: NOW,
        )
    return context


# The document the tests are generated from: the app's own (it depends on the routes only;
# the served /openapi.json is checked to be the same below).
SCHEMA = schemathesis.openapi.from_dict(create_app(_context(cast(Any, None))).openapi())
# Every case names the seeded webhook endpoint: an endpoint id is random (no PUT creates
# one), so a generated id is a 404 and the document's one example was sent without a token;
# bad endpoint ids are tested in tests/api/test_webhooks.py.
SCHEMA.config.update(
    parameters={
        "path.endpoint_id": "we_3f9a1c0e5b7d2a64",
        "path.rule_id": "ar_3f9a1c0e5b7d2a64",
        "path.command_id": COMMAND,
        "path.order_id": ORDER,
    }
)


@pytest.fixture(scope="module")
async def customer_key(store: ClickHouseStore) -> str:
    """Seed what the document's examples name, through the API itself; return the customer's
    API key."""
    app = create_app(_context(store))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=ADMIN) as c:

        async def ok(method: str, url: str, body: object = None) -> Any:
            r = await c.request(method, url, json=body)
            assert r.is_success, r.text
            return r.json()

        tz = "Europe/Amsterdam"
        await ok("PUT", f"/v1/customers/{CUSTOMER}", {"name": "Acme BV", "timezone": tz})
        await ok("PUT", f"/v1/plans/{PLAN_ID}", PLAN)
        for plan_id in ("basic", "pro"):  # GET /v1/plans/compare's example
            await ok("PUT", f"/v1/plans/{plan_id}", {**PLAN, "name": plan_id})
        sub = {"plan_id": PLAN_ID, "start": "2026-11-01T00:00:00+01:00"}
        await ok("PUT", f"/v1/customers/{CUSTOMER}/subscription", sub)
        device = {
            "kind": "printer",
            "customer_id": CUSTOMER,
            "assigned_from": "2026-11-01T00:00:00Z",
        }
        for device_id in (DEVICE, "printer-0043"):  # POST /v1/device-credentials' example
            await ok("PUT", f"/v1/devices/{device_id}", device)
        await ok("POST", f"/v1/devices/{DEVICE}/credentials", {"type": "password"})
        key = await ok("POST", f"/v1/customers/{CUSTOMER}/api-keys", {"name": "fuzz"})
        quote = await ok(
            "POST",
            "/v1/quotes",
            {"customer_id": CUSTOMER, "plan_id": PLAN_ID, "quantities": {"pages_printed": "1"}},
        )
        for quote_id in QUOTES:  # accept's, send's and decline's examples
            await store.put_quote(Quote.model_validate({**quote, "quote_id": quote_id}), NOW)
    rows = [
        ReadingRow(DEVICE, seq, 0, "pages_printed", at, Decimal(value), at, at, 0)
        for seq, (at, value) in enumerate(
            (NOW - timedelta(days=d), str(48_000 + 100 * (30 - d))) for d in range(25, 0, -1)
        )
    ]
    await store.insert_readings(rows)
    letter = DeadLetter.build(
        reason=RejectReason.UNKNOWN_METER,
        detail="no meter 'toner_pct'",
        stage="aggregator",
        mqtt_topic=f"devices/{DEVICE}/telemetry",
        # refused when toner_pct was not defined yet: it is now, so the replay passes
        payload=b'{"device_id": "printer-0042", "seq": 1, "sent_at": "2026-11-27T08:00:00Z", '
        b'"readings": [{"meter": "toner_pct", "value": "2", "at": "2026-11-27T08:00:00Z"}]}',
        device_id=DEVICE,
        seq=1,
        rejected_at=NOW - timedelta(hours=1),
    )
    await store.record_dead_letters([letter.model_copy(update={"id": LETTER})])
    seeded = VoidRequest(device_id=DEVICE, seq=3, reason="seeded")  # vd_printer-0042_1
    hook = Endpoint(
        endpoint_id=ENDPOINT,
        url="https://erp.example/hooks",
        description="",
        event_types=[],
        status=EndpointStatus.ENABLED,
        disabled_reason=None,
        created_at=NOW,
        enabled_at=NOW,
        updated_at=NOW,
    )
    await store.put_endpoint(hook, [Secret(new_secret(), None)])
    made = await create_rule(store, AlertRuleSpec.model_validate(ALERT_EXAMPLE), NOW)
    await store.put_rule(made.model_copy(update={"rule_id": "ar_3f9a1c0e5b7d2a64"}))
    await void_readings(store, seeded, NOW, "admin", "fuzz")
    order = CommandSpec(name="refill_scheduled")
    await create_command(store, DEVICE, order, NOW, "admin", command_id=COMMAND)
    refill = Order(
        order_id=ORDER,
        device_id=DEVICE,
        customer_id=CUSTOMER,
        consumable="toner",
        status=OrderStatus.OPEN,
        reason="level",
        level="8",
        days_left=None,
        cycle_start=NOW - timedelta(days=20),
        created_at=NOW,
    )
    await store.put_order(refill, NOW)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=ADMIN) as c:
        closed = await c.post(f"/v1/customers/{CUSTOMER}/periods/2026-11/close")
        assert closed.status_code == 201, closed.text  # st_acme_2026-11
    return str(key["secret"])


class _Server(threading.Thread):
    """uvicorn on a socket, on a loop and store connection of its own: schemathesis calls
    it synchronously from the test thread."""

    def __init__(self, settings: Settings, pki: Path) -> None:
        super().__init__(name="fuzzed-api", daemon=True)
        self.url = f"http://127.0.0.1:{free_port()}"
        self._settings = settings
        self._pki = pki
        self.server: uvicorn.Server | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by the fixture
            self.error = exc

    async def _serve(self) -> None:
        s = self._settings.store
        store = await ClickHouseStore.connect(s.dsn, s.database)
        try:
            config = uvicorn.Config(
                create_app(_context(store, self._pki)),
                host="127.0.0.1",
                port=int(self.url.rsplit(":", 1)[1]),
                log_config=None,
                access_log=False,
                lifespan="off",
            )
            self.server = uvicorn.Server(config)
            await self.server.serve()
        finally:
            await store.close()


@pytest.fixture(scope="module")
def api(
    settings: Settings, customer_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The base URL of the running API (seeded first)."""
    thread = _Server(settings, tmp_path_factory.mktemp("pki"))
    thread.start()
    deadline = time.monotonic() + 30
    while not (thread.server and thread.server.started):
        assert thread.is_alive(), f"uvicorn did not start: {thread.error!r}"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.02)
    served = httpx.get(f"{thread.url}/openapi.json").json()
    assert served == SCHEMA.raw_schema, "the served document is not the one the tests use"
    yield thread.url
    assert thread.server is not None
    thread.server.should_exit = True
    thread.join(timeout=30)


# The checks, and why these: no 5xx; status code, content type, headers and body as
# documented; input the document calls invalid is refused with a 4xx (negative data); an
# operation that needs a token refuses a request without one or with a wrong one; a method
# the path does not have is a 405 that lists, in Allow, exactly the documented methods.
# Not enabled: positive_data_acceptance (schema-valid input must be a 2xx) -- the document
# cannot express the cross-field and data-dependent rules ("to" after "from", exactly one of
# customer_id and prospect, the plan's currency is the customer's), so those legitimate
# 422s would fail it; use_after_free, ensure_resource_availability and
# object_level_authorization need stateful runs across operations (links), which one
# operation per test does not make; missing_required_header: no operation has a required
# header besides the bearer token, which ignored_auth covers; max_response_time: timing is
# not behaviour, and would flake on a loaded CI machine.
CHECKS = [
    getattr(schemathesis.checks, name)
    for name in (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
        "unsupported_method",
        "allow_header_conformance",
    )
]
EXAMPLES = int(os.environ.get("TELEMETER_FUZZ_EXAMPLES", "20"))
"""Generated examples per operation and auth variant, on top of the document's examples and
schemathesis' coverage cases (boundaries, each required field missing, wrong types, ...)."""
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same cases on every run: CI does not flake on a new draw
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the report has a curl line
    suppress_health_check=list(HealthCheck),  # large bodies are slow to draw, not a fault
    print_blob=False,
)

# A customer's key reads its own usage, rated usage, invoice preview and quotes: those run with its
# own customer id (so they reach the pricing code), plus one admin route it must be refused.
CUSTOMER_SCHEMA = schemathesis.openapi.from_dict(SCHEMA.raw_schema).include(
    path_regex=r"^/v1/customers/\{customer_id\}(/usage|/rated-usage|/invoice-preview|/quotes)?$",
    method="GET",
)
CUSTOMER_SCHEMA.config.update(parameters={"path.customer_id": CUSTOMER})


def _call(case: schemathesis.Case, api: str, token: str) -> None:
    """Send the case with ``token`` and run the checks; a case that leaves the token out on
    purpose (negative data for the security scheme) is sent without one."""
    negated = case.operation.schema.is_security_param_negated(case)
    headers = None if negated else {"Authorization": f"Bearer {token}"}
    response = case.call_and_validate(base_url=api, headers=headers, checks=CHECKS)
    ANSWERED.setdefault(_operation(case), set()).add(response.status_code)


def _operation(case: schemathesis.Case) -> str:
    return f"{case.operation.method.upper()} {case.operation.path}"


ANSWERED: dict[str, set[int]] = {}
"""The statuses each operation answered (and were checked against the document) so far."""
NO_SUCCESS = {
    "DELETE /v1/customers/{customer_id}/api-keys/{key_id}": "key ids are random",
    "DELETE /v1/devices/{device_id}/credentials/{credential_id}": "credential ids are random",
    "DELETE /v1/staff-tokens/{token_id}": "token ids are random",
}
"""Operations no fuzz case can reach with success, and why (their 204s are tested with the
ids their creation returned: tests/api/test_api_keys.py, test_access.py, the credentials'
tests)."""


@SCHEMA.parametrize()
@FUZZ
def test_admin(case: schemathesis.Case, api: str) -> None:
    """With the admin token no input gets a 5xx and every answer matches the document."""
    _call(case, api, ADMIN_TOKEN)


@CUSTOMER_SCHEMA.parametrize()
@FUZZ
def test_customer(case: schemathesis.Case, api: str, customer_key: str) -> None:
    """With a customer's API key no input gets a 5xx and every answer matches the document:
    its own usage, rated usage and invoice preview, and a 403 for an admin route."""
    _call(case, api, customer_key)


def test_every_operation_answered_a_success_as_documented() -> None:
    """Run after the fuzz above (file order): every operation of the document, but those
    in NO_SUCCESS, answered at least one 2xx that passed every check, so each success
    schema is checked against a real answer, not only error bodies."""
    if not ANSWERED:
        pytest.skip("the fuzz tests above did not run (selected alone)")
    operations = [
        f"{method.upper()} {path}"
        for path, item in SCHEMA.raw_schema["paths"].items()
        for method in item
    ]
    missing = [
        op
        for op in operations
        if op not in NO_SUCCESS and not any(200 <= s < 300 for s in ANSWERED.get(op, ()))
    ]
    assert missing == [], f"no checked 2xx answer: {missing} {[ANSWERED.get(m) for m in missing]}"
