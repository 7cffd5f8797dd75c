"""Settings read from the environment the way operators write them."""

from __future__ import annotations

import pytest

from telemeter.config import DEV_KAFKA_PASSWORDS, Settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean TELEMETER_* environment."""
    import os

    for key in list(os.environ):
        if key.startswith("TELEMETER_"):
            monkeypatch.delenv(key)
    return monkeypatch


class TestFromEnvironment:
    """Nested sections, partial roles and paths that mean 'none'."""

    def test_a_role_given_in_part_keeps_its_username(self, env: pytest.MonkeyPatch) -> None:
        """Only a password for one Kafka role: its username stays telemeter-<role>, the
        other roles keep their defaults."""
        env.setenv("TELEMETER_KAFKA__BRIDGE__PASSWORD", "only-the-password")
        s = Settings(_env_file=None)  # type: ignore[call-arg]
        assert s.kafka.bridge.username == "telemeter-bridge"
        assert s.kafka.bridge.password.get_secret_value() == "only-the-password"
        assert s.kafka.api.password.get_secret_value() == DEV_KAFKA_PASSWORDS["api"]

    @pytest.mark.parametrize("value", ["null", "", "None"])
    def test_null_paths(self, env: pytest.MonkeyPatch, value: str) -> None:
        """'null', '' or 'none' for a path setting is no path, not a file named 'null'."""
        env.setenv("TELEMETER_BROKER__PID_FILE", value)
        env.setenv("TELEMETER_BROKER__AUTH_DIR", value)
        env.setenv("TELEMETER_KAFKA__ADMIN", "null")
        s = Settings(_env_file=None)  # type: ignore[call-arg]
        assert (s.broker.pid_file, s.broker.auth_dir, s.kafka.admin) == (None, None, None)

    def test_secrets_lists_every_configured_secret(self, env: pytest.MonkeyPatch) -> None:
        """What the log redactor is given: the admin token, the MQTT and Kafka passwords and
        the DSN's password."""
        env.setenv("TELEMETER_API__ADMIN_TOKEN", "a" * 40)
        env.setenv("TELEMETER_STORE__DSN", "http://default:dsn-password@h:8123")
        found = Settings(_env_file=None).secrets()  # type: ignore[call-arg]
        assert {"a" * 40, "dsn-password", *DEV_KAFKA_PASSWORDS.values()} <= set(found)
