"""Settings read from the environment the way operators write them: one set of variable
names for the app and deploy/services.sh, and every TELEMETER_* variable that does nothing
named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from telemeter.config import (
    DEPRECATED_VARIABLES,
    DEV_KAFKA_PASSWORDS,
    REPO_ROOT,
    MqttSettings,
    Settings,
    unknown_variables,
)

SERVICES = REPO_ROOT / "deploy" / "services.sh"


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

    def test_a_childs_environment_gives_the_same_settings(self, env: pytest.MonkeyPatch) -> None:
        """``settings_env`` (how the chaos run, the bench and the CLI tests configure a
        child process) reproduces every setting, lists such as the retry schedule too."""
        from telemeter.chaos import settings_env

        given = Settings(_env_file=None)  # type: ignore[call-arg]
        for name, value in settings_env(given).items():
            env.setenv(name, value)
        assert Settings(_env_file=None) == given  # type: ignore[call-arg]

    def test_secrets_lists_every_configured_secret(self, env: pytest.MonkeyPatch) -> None:
        """What the log redactor is given: the admin token, the MQTT and Kafka passwords and
        the DSN's password."""
        env.setenv("TELEMETER_API__ADMIN_TOKEN", "a" * 40)
        env.setenv("TELEMETER_STORE__DSN", "http://default:dsn-password@h:8123")
        found = Settings(_env_file=None).secrets()  # type: ignore[call-arg]
        assert {"a" * 40, "dsn-password", *DEV_KAFKA_PASSWORDS.values()} <= set(found)


class TestRunDir:
    """TELEMETER_RUN_DIR (services.sh's runtime state) moves the app's default paths too."""

    def test_default_paths_follow_the_run_dir(
        self, env: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """The embedded store, the broker's files and the dev CA default to the run dir."""
        env.setenv("TELEMETER_RUN_DIR", str(tmp_path))
        s = Settings(_env_file=None)  # type: ignore[call-arg]
        assert s.store.dsn == f"chdb://{tmp_path}/chdb"
        assert s.broker.auth_dir == tmp_path / "mosquitto" / "auth"
        assert s.broker.pid_file == tmp_path / "mosquitto" / "mosquitto.pid"
        assert s.broker.ca_cert_file == tmp_path / "pki" / "ca.crt"
        assert s.mqtt.ca_file == tmp_path / "pki" / "ca.crt"

    def test_explicit_paths_win(self, env: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """A path set on its own (and TELEMETER_PKI_DIR) is kept whatever the run dir."""
        env.setenv("TELEMETER_RUN_DIR", str(tmp_path / "run"))
        env.setenv("TELEMETER_PKI_DIR", str(tmp_path / "pki"))
        env.setenv("TELEMETER_STORE__DSN", "chdb:///var/lib/telemeter/chdb")
        s = Settings(_env_file=None)  # type: ignore[call-arg]
        assert s.store.dsn == "chdb:///var/lib/telemeter/chdb"
        assert s.broker.ca_key_file == tmp_path / "pki" / "ca.key"
        assert s.broker.auth_dir == tmp_path / "run" / "mosquitto" / "auth"


class TestBrokerListeners:
    """The bridge connects to the broker listener that matches its login."""

    @pytest.mark.parametrize(
        ("values", "port"),
        [
            ({}, 1883),
            ({"tls": True, "cert_file": "/c.crt", "key_file": "/c.key"}, 8883),
            ({"tls": True}, 8884),
            ({"port": 1999, "tls_port": 2999, "tls_password_port": 3999}, 1999),
            ({"tls": True, "port": 1999, "tls_port": 2999, "cert_file": "/c.crt"}, 2999),
            ({"tls": True, "port": 1999, "tls_password_port": 3999}, 3999),
            # set before the TLS listeners had settings: a TLS bridge's own port is kept
            ({"tls": True, "port": 18883, "cert_file": "/c.crt"}, 18883),
        ],
    )
    def test_bridge_port(self, values: dict[str, object], port: int) -> None:
        """Password login: ``port``; TLS with a certificate: ``tls_port``; TLS with a
        password: ``tls_password_port``."""
        assert MqttSettings(**values).bridge_port == port  # type: ignore[arg-type]


def _services_variables() -> set[str]:
    """Every TELEMETER_* name deploy/services.sh reads (role templates left out)."""
    names = set(re.findall(r"\bTELEMETER_[A-Z_]*[A-Z]\b", SERVICES.read_text()))
    return {n for n in names if not n.endswith("_")}


class TestUnknownVariables:
    """A TELEMETER_* variable that nothing reads is named, with the closest known name."""

    def test_a_typo_is_named_with_the_closest_known_name(self) -> None:
        """TELEMETER_MQTT__PROT is unknown, and TELEMETER_MQTT__PORT is suggested."""
        (problem,) = unknown_variables({"TELEMETER_MQTT__PROT": "1884", "HOME": "/root"})
        assert (problem.name, problem.replacement, problem.deprecated) == (
            "TELEMETER_MQTT__PROT",
            "TELEMETER_MQTT__PORT",
            False,
        )
        assert "TELEMETER_MQTT__PORT" in str(problem)

    def test_nothing_close_is_suggested_for_a_name_far_from_every_setting(self) -> None:
        """A name unlike every setting is reported without a suggestion."""
        (problem,) = unknown_variables({"TELEMETER_ZEBRA": "1"})
        assert problem.replacement is None

    def test_every_setting_at_every_depth_is_known(self) -> None:
        """Nested settings, a whole section, a Kafka role's fields and lower-case names (the
        settings read names case-insensitively) are known."""
        environ = {
            "TELEMETER_MQTT__PORT": "1",
            "TELEMETER_MQTT__TLS_PASSWORD_PORT": "1",
            "TELEMETER_KAFKA__BRIDGE__PASSWORD": "x",
            "TELEMETER_KAFKA__ADMIN": "null",
            "TELEMETER_KAFKA__BOOTSTRAP": "127.0.0.1:9092",
            "TELEMETER_RUN_DIR": "/srv/telemeter",
            "telemeter_api__port": "8001",
        }
        assert unknown_variables(environ) == []

    def test_what_services_sh_reads_is_known(self) -> None:
        """Every variable deploy/services.sh reads is known: the shared settings, its own
        (controller port, cache dir...) and its deprecated old names, which are reported as
        deprecated with their new name."""
        names = _services_variables()
        assert {"TELEMETER_MQTT__PORT", "TELEMETER_KAFKA__BOOTSTRAP", "TELEMETER_RUN_DIR"} <= names
        problems = unknown_variables(dict.fromkeys(names, "1"))
        assert [p for p in problems if not p.deprecated] == []
        assert {p.name: p.replacement for p in problems} == {
            n: DEPRECATED_VARIABLES[n] for n in names & DEPRECATED_VARIABLES.keys()
        }

    def test_the_env_file_is_checked_too(self, tmp_path: Path) -> None:
        """A typo in .env (which the settings read) is named as well."""
        env_file = tmp_path / ".env"
        env_file.write_text("# comment\nTELEMETER_API__PROT=8001\nTELEMETER_API__PORT=8001\n")
        assert [p.name for p in unknown_variables({}, env_file)] == ["TELEMETER_API__PROT"]
