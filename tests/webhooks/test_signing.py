"""Signing per Standard Webhooks, checked with the receivers' own package
(``standardwebhooks``): a signed request verifies, with either secret during a rotation; a
changed body, a wrong secret, and the same request 6 minutes later do not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from webhooks.signing import body, headers, new_secret


def _signed(*keys: str, ago: timedelta = timedelta(0)) -> tuple[str, dict[str, str]]:
    """Signed now (the package checks the timestamp against the wall clock), or ``ago``."""
    now = datetime.now(UTC)
    content = body("statement.closed", now, '{"statement_id":"st_acme_2026-11"}')
    return content, headers("evt_1", now - ago, content, keys)


class TestSignature:
    """What a receiver checks."""

    def test_verifies_with_the_package(self) -> None:
        """The body parses as {type, timestamp, data}; the headers carry id and time."""
        secret = new_secret()
        content, sent = _signed(secret)
        got = Webhook(secret).verify(content, sent)
        assert got == {
            "type": "statement.closed",
            "timestamp": got["timestamp"],
            "data": {"statement_id": "st_acme_2026-11"},
        }
        assert sent["webhook-id"] == "evt_1"
        assert abs(int(sent["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60
        assert secret.startswith("whsec_")

    def test_both_secrets_verify_during_a_rotation(self) -> None:
        """Signed with the new and the old secret: a receiver on either verifies."""
        new, old = new_secret(), new_secret()
        content, sent = _signed(new, old)
        assert len(sent["webhook-signature"].split(" ")) == 2
        for secret in (new, old):
            Webhook(secret).verify(content, sent)

    @pytest.mark.parametrize("fault", ["body", "secret", "six minutes later"])
    def test_refused(self, fault: str) -> None:
        """A changed body, another secret, or a replay 6 minutes later is refused."""
        secret = new_secret()
        ago = timedelta(minutes=6) if fault == "six minutes later" else timedelta(0)
        content, sent = _signed(secret, ago=ago)
        if fault == "body":
            content = content.replace("2026-11", "2026-12")
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret() if fault == "secret" else secret).verify(content, sent)
