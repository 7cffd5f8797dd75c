"""Per-customer API keys through the API (ASGI) on a real chDB store: created by the admin,
shown once, stored hashed, scoped to their customer's usage, rated usage and invoice preview,
and revocable."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from tests.api.conftest import api_client

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
OWN = "keys-acme"
OTHER = "keys-globex"
READABLE = ["usage?meter=door_cycles", "rated-usage", "invoice-preview"]


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client, clock fixed at NOW, with two subscribed customers holding usage."""
    async with api_client(store, clock=lambda: NOW) as c:
        plan = {
            "name": "Doors",
            "currency": "EUR",
            "billing_period": "month",
            "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "0.50"}],
        }
        assert (await c.put("/v1/plans/keys-doors", json=plan)).status_code == 200
        for cid in (OWN, OTHER):
            customer = {"name": cid, "timezone": "Europe/Amsterdam", "currency": "EUR"}
            assert (await c.put(f"/v1/customers/{cid}", json=customer)).status_code == 200
            device = {"kind": "door", "customer_id": cid, "assigned_from": "2026-01-01T00:00:00Z"}
            assert (await c.put(f"/v1/devices/{cid}-door", json=device)).status_code == 200
            subscription = {"plan_id": "keys-doors", "start": "2026-11-01T00:00:00+01:00"}
            r = await c.put(f"/v1/customers/{cid}/subscription", json=subscription)
            assert r.status_code == 200, r.text
        at = datetime(2026, 11, 5, tzinfo=UTC)
        await store.insert_readings(
            [ReadingRow(f"{OWN}-door", 1, 0, "door_cycles", at, Decimal(10), at, at, 0)]
        )
        yield c


async def new_key(client: httpx.AsyncClient, cid: str = OWN, name: str = "billing export") -> str:
    """Create a key for ``cid`` and return its secret."""
    r = await client.post(f"/v1/customers/{cid}/api-keys", json={"name": name})
    assert r.status_code == 201, r.text
    secret: str = r.json()["secret"]
    return secret


class TestKeyManagement:
    """The admin creates, lists and revokes keys."""

    async def test_secret_shown_once_never_listed(self, client: httpx.AsyncClient) -> None:
        """Creation answers 201 with the secret; the listing shows the key without it."""
        r = await client.post(f"/v1/customers/{OWN}/api-keys", json={"name": "billing export"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert set(created) == {"key_id", "customer_id", "name", "created_at", "secret"}
        assert created["customer_id"] == OWN
        assert created["created_at"] == "2026-11-20T12:00:00.000Z"
        assert created["secret"].startswith(f"tmk_{created['key_id']}_")
        listing = await client.get(f"/v1/customers/{OWN}/api-keys")
        assert listing.status_code == 200
        assert created["secret"] not in listing.text
        (listed,) = [k for k in listing.json()["items"] if k["key_id"] == created["key_id"]]
        assert listed == {
            "key_id": created["key_id"],
            "customer_id": OWN,
            "name": "billing export",
            "last4": created["secret"][-4:],
            "created_at": "2026-11-20T12:00:00.000Z",
            "revoked_at": None,
        }

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/v1/customers/nobody/api-keys"),
            ("GET", "/v1/customers/nobody/api-keys"),
            ("DELETE", "/v1/customers/nobody/api-keys/0123456789abcdef"),
            ("DELETE", f"/v1/customers/{OWN}/api-keys/0123456789abcdef"),
        ],
        ids=["create", "list", "revoke", "unknown-key"],
    )
    async def test_unknown_customer_or_key_is_404(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        """An unknown customer, or a key the customer does not have, is a 404."""
        r = await client.request(method, path, json={"name": "x"} if method == "POST" else None)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"

    async def test_other_customers_key_is_404_here(self, client: httpx.AsyncClient) -> None:
        """A key is revoked only under its own customer; under another it does not exist."""
        key_id = (await new_key(client, OTHER)).split("_")[1]
        r = await client.delete(f"/v1/customers/{OWN}/api-keys/{key_id}")
        assert r.status_code == 404

    async def test_name_is_required(self, client: httpx.AsyncClient) -> None:
        """A key needs a non-empty name."""
        r = await client.post(f"/v1/customers/{OWN}/api-keys", json={"name": ""})
        assert r.status_code == 422


class TestCustomerKey:
    """A key reads its own customer's usage, rated usage and invoice preview, nothing else."""

    @pytest.mark.parametrize("what", READABLE)
    async def test_reads_own(self, client: httpx.AsyncClient, what: str) -> None:
        """The key reads its own customer's data, with the same answer as the admin."""
        secret = await new_key(client)
        mine = await client.get(f"/v1/customers/{OWN}/{what}", headers=bearer(secret))
        assert mine.status_code == 200, mine.text
        assert mine.json() == (await client.get(f"/v1/customers/{OWN}/{what}")).json()

    async def test_own_numbers(self, client: httpx.AsyncClient) -> None:
        """Through the key, usage is 10 cycles and the rated total 5.00 EUR."""
        auth = bearer(await new_key(client))
        usage = await client.get(f"/v1/customers/{OWN}/usage?meter=door_cycles", headers=auth)
        assert usage.json()["total"] == "10"
        rated = await client.get(f"/v1/customers/{OWN}/rated-usage", headers=auth)
        assert Decimal(rated.json()["rating"]["total"]) == Decimal("5.00")

    @pytest.mark.parametrize("what", READABLE)
    async def test_other_customer_is_403(self, client: httpx.AsyncClient, what: str) -> None:
        """The same key on another customer's data is a 403, including a customer that does
        not exist (its existence is not revealed)."""
        auth = bearer(await new_key(client))
        for cid in (OTHER, "nobody"):
            r = await client.get(f"/v1/customers/{cid}/{what}", headers=auth)
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "forbidden"
            assert OWN in r.json()["error"]["message"]

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/v1/meters"),
            ("GET", "/v1/customers"),
            ("GET", f"/v1/customers/{OWN}"),
            ("GET", "/v1/dead-letters"),
            ("GET", "/v1/usage/unassigned?meter=door_cycles"),
            ("GET", f"/v1/customers/{OWN}/subscription"),
            ("GET", f"/v1/customers/{OWN}/api-keys"),
            ("POST", f"/v1/customers/{OWN}/api-keys"),
            ("PUT", f"/v1/customers/{OWN}"),
            ("PUT", "/v1/meters/keys_meter"),
        ],
    )
    async def test_admin_routes_are_403(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        """Every other route is admin-only: a valid key there is a 403, not a 401."""
        auth = bearer(await new_key(client))
        r = await client.request(method, path, headers=auth, json={"name": "x"})
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert error["code"] == "forbidden"
        assert "can only read its own customer's usage" in error["message"]


class TestRejectedKeys:
    """A key that is not a valid, unrevoked key is a 401."""

    async def test_revoked_key_is_401(self, client: httpx.AsyncClient) -> None:
        """After DELETE (204) the key is a 401 everywhere and listed with its revocation."""
        secret = await new_key(client)
        key_id = secret.split("_")[1]
        usage = f"/v1/customers/{OWN}/usage?meter=door_cycles"
        assert (await client.get(usage, headers=bearer(secret))).status_code == 200
        revoked = await client.delete(f"/v1/customers/{OWN}/api-keys/{key_id}")
        assert revoked.status_code == 204
        assert revoked.content == b""
        for path in (usage, "/v1/meters"):
            r = await client.get(path, headers=bearer(secret))
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"
        listing = (await client.get(f"/v1/customers/{OWN}/api-keys")).json()["items"]
        (listed,) = [k for k in listing if k["key_id"] == key_id]
        assert listed["revoked_at"] == "2026-11-20T12:00:00.000Z"

    async def test_revoking_twice_is_204(self, client: httpx.AsyncClient) -> None:
        """Revoking a revoked key again is accepted and changes nothing."""
        key_id = (await new_key(client)).split("_")[1]
        for _ in range(2):
            r = await client.delete(f"/v1/customers/{OWN}/api-keys/{key_id}")
            assert r.status_code == 204

    async def test_other_keys_survive_a_revocation(self, client: httpx.AsyncClient) -> None:
        """Revoking one key leaves the customer's other keys working."""
        kept, dropped = await new_key(client), await new_key(client)
        await client.delete(f"/v1/customers/{OWN}/api-keys/{dropped.split('_')[1]}")
        r = await client.get(f"/v1/customers/{OWN}/rated-usage", headers=bearer(kept))
        assert r.status_code == 200

    @pytest.mark.parametrize(
        "token",
        [
            "garbage",
            "tmk_0123456789abcdef_" + "A" * 43,
            "tmk_nothex_whatever",
        ],
        ids=["garbage", "unknown-id", "malformed"],
    )
    async def test_unknown_key_is_401(self, client: httpx.AsyncClient, token: str) -> None:
        """A token that is no key of ours is a 401, on a customer route and an admin route."""
        for path in (f"/v1/customers/{OWN}/rated-usage", "/v1/meters"):
            r = await client.get(path, headers=bearer(token))
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"

    async def test_wrong_secret_is_401(self, client: httpx.AsyncClient) -> None:
        """A real key id with a wrong secret is a 401."""
        secret = await new_key(client)
        wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
        r = await client.get(f"/v1/customers/{OWN}/invoice-preview", headers=bearer(wrong))
        assert r.status_code == 401

    async def test_missing_token_is_401(self, client: httpx.AsyncClient) -> None:
        """No Authorization header on a customer-readable route is a 401."""
        r = await client.get(f"/v1/customers/{OWN}/rated-usage", headers={"Authorization": ""})
        assert r.status_code == 401


class TestStorage:
    """Only a hash of the secret is stored."""

    async def test_row_has_no_secret(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """The stored row holds the secret's sha256 and last 4 characters, never the secret or
        its random part."""
        secret = await new_key(client, name="hash check")
        key_id, random_part = secret.split("_", 2)[1:]
        rows = await store._rows(
            f"SELECT * FROM {store.database}.api_keys WHERE key_id = {{k:String}}", {"k": key_id}
        )
        assert len(rows) == 1
        cells = [str(cell) for cell in rows[0]]
        assert not any(secret in c or random_part in c for c in cells)
        assert hashlib.sha256(secret.encode()).hexdigest() in cells
        assert secret[-4:] in cells
