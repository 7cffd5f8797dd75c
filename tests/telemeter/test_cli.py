"""Operator mistakes at the command line end in one line that says what is wrong and what to
do, exit non-zero, and no traceback: ``telemeter up`` twice (the API's port taken, the
embedded store's directory locked), Kafka or MQTT down at start; ``check-config`` names
variables that do nothing and, with ``--connect``, the services it cannot reach."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from telemeter.chaos import settings_env
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker, free_port
from tests.conftest import REPO, SettingsFactory

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("broker")]


def _environment(**values: str) -> dict[str, str]:
    """This process's environment without its TELEMETER_* variables, plus ``values``."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("TELEMETER_")}
    return {**clean, "PYTHONPATH": str(REPO), **values}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "telemeter", *args]


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``telemeter <args>`` in a child process (``cwd`` holds no .env)."""
    return subprocess.run(
        _command(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The run failed without a traceback, with exactly one ``telemeter:`` line: that line."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.startswith("telemeter: ")]
    assert len(lines) == 1, output
    return lines[0]


def _stack_env(settings: Settings, run_dir: Path, **values: str) -> dict[str, str]:
    """The child's environment for ``settings``, with an embedded store of its own."""
    own = {"TELEMETER_RUN_DIR": str(run_dir), "TELEMETER_STORE__DSN": f"chdb://{run_dir / 'chdb'}"}
    return _environment(**{**settings_env(settings), **own, **values})


@pytest.fixture
def running_up(
    services: None, make_settings: SettingsFactory, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """A ``telemeter up`` that serves (on this module's broker and topics), with its
    environment; stopped with SIGTERM afterwards, which must end it cleanly (exit 0)."""
    settings = make_settings()
    env = _stack_env(settings, tmp_path / "first")
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(_command("up"), env=env, cwd=tmp_path, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{settings.api.port}/readyz"
    deadline = time.monotonic() + 120
    while True:
        if first.poll() is not None:
            pytest.fail(f"the first `up` exited: {(tmp_path / 'first.log').read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            first.kill()
            pytest.fail(f"the first `up` never got ready: {(tmp_path / 'first.log').read_text()}")
        time.sleep(0.2)
    yield first, env
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 0, (tmp_path / "first.log").read_text()


class TestUpTwice:
    """A second ``telemeter up`` beside a running one says why it cannot start."""

    def test_the_same_api_port(
        self, running_up: tuple[subprocess.Popen[bytes], dict[str, str]], tmp_path: Path
    ) -> None:
        """Same settings: the API's port is in use; the line says to stop the other one or
        set TELEMETER_API__PORT."""
        _, env = running_up
        line = _one_line(_cli("up", env=env, cwd=tmp_path))
        assert "api cannot start" in line
        assert "already in use" in line
        assert "TELEMETER_API__PORT" in line

    def test_the_same_embedded_store(
        self, running_up: tuple[subprocess.Popen[bytes], dict[str, str]], tmp_path: Path
    ) -> None:
        """Another API port but the same chDB directory: the directory is locked by the
        first process, named by its pid."""
        first, env = running_up
        env = {**env, "TELEMETER_API__PORT": str(free_port())}
        line = _one_line(_cli("up", env=env, cwd=tmp_path))
        assert "store cannot start" in line
        assert f"in use by process {first.pid}" in line
        assert "TELEMETER_STORE__DSN" in line


class TestServicesDown:
    """Kafka or MQTT down at start: one line naming the service and the variable to check."""

    def test_kafka_down(self, tmp_path: Path) -> None:
        """Nothing at Kafka's address: the line names Kafka, the address and
        TELEMETER_KAFKA__BOOTSTRAP."""
        bootstrap = f"127.0.0.1:{free_port()}"
        env = _environment(
            TELEMETER_RUN_DIR=str(tmp_path),
            TELEMETER_KAFKA__BOOTSTRAP=bootstrap,
            TELEMETER_KAFKA__STARTUP_TIMEOUT="PT1S",
            TELEMETER_API__PORT=str(free_port()),
        )
        line = _one_line(_cli("up", env=env, cwd=tmp_path))
        assert "Kafka" in line
        assert bootstrap in line
        assert "TELEMETER_KAFKA__BOOTSTRAP" in line

    def test_mqtt_down(
        self, services: None, make_settings: SettingsFactory, tmp_path: Path
    ) -> None:
        """Nothing at the broker's port: after the rest has started, the bridge's line names
        MQTT, the address and TELEMETER_MQTT__PORT."""
        settings = make_settings()
        port = free_port()
        env = _stack_env(settings, tmp_path, TELEMETER_MQTT__PORT=str(port))
        line = _one_line(_cli("up", env=env, cwd=tmp_path))
        assert "bridge cannot start" in line
        assert f"127.0.0.1:{port}" in line
        assert "TELEMETER_MQTT__PORT" in line

    def test_a_component_warns_once_about_an_unknown_variable(self, tmp_path: Path) -> None:
        """A misspelt variable is named (with the closest known name) in one warning line
        when a component starts."""
        env = _environment(
            TELEMETER_RUN_DIR=str(tmp_path),
            TELEMETER_KAFKA__BOOTSTRAP=f"127.0.0.1:{free_port()}",
            TELEMETER_KAFKA__STARTUP_TIMEOUT="PT0S",
            TELEMETER_MQTT__PROT="1884",
            TELEMETER_BRIDGE__METRICS_PORT=str(free_port()),
        )
        result = _cli("bridge", env=env, cwd=tmp_path)
        warnings = [line for line in result.stderr.splitlines() if "TELEMETER_MQTT__PROT" in line]
        assert len(warnings) == 1, result.stderr
        assert "TELEMETER_MQTT__PORT" in warnings[0]
        _one_line(result)


class TestCheckConfig:
    """``check-config`` fails on variables that do nothing and, with --connect, on services
    it cannot reach."""

    def test_an_unknown_variable_fails_with_the_closest_known_name(self, tmp_path: Path) -> None:
        """TELEMETER_MQTT__PROT: exit 1, named, TELEMETER_MQTT__PORT suggested."""
        env = _environment(TELEMETER_RUN_DIR=str(tmp_path), TELEMETER_MQTT__PROT="1884")
        result = _cli("check-config", env=env, cwd=tmp_path)
        assert result.returncode == 1
        assert "TELEMETER_MQTT__PROT" in result.stderr
        assert "did you mean TELEMETER_MQTT__PORT?" in result.stderr

    def test_known_variables_pass(self, tmp_path: Path) -> None:
        """Settings and the variables only deploy/services.sh reads: exit 0."""
        env = _environment(
            TELEMETER_RUN_DIR=str(tmp_path),
            TELEMETER_MQTT__TLS_PORT="18883",
            TELEMETER_KAFKA_CONTROLLER_PORT="19093",
            TELEMETER_WAIT_TIMEOUT="30",
        )
        result = _cli("check-config", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr

    def test_connect_names_each_unreachable_service(self, tmp_path: Path) -> None:
        """MQTT and Kafka down, the store fine: one line each, the two down ones say so,
        exit 1."""
        mqtt, kafka = free_port(), f"127.0.0.1:{free_port()}"
        env = _environment(
            TELEMETER_RUN_DIR=str(tmp_path),
            TELEMETER_MQTT__PORT=str(mqtt),
            TELEMETER_KAFKA__BOOTSTRAP=kafka,
        )
        result = _cli("check-config", "--connect", env=env, cwd=tmp_path)
        assert result.returncode == 1
        assert "Traceback" not in result.stdout + result.stderr
        lines = (result.stdout + result.stderr).splitlines()
        [mqtt_line] = [line for line in lines if line.startswith("mqtt ")]
        [kafka_line] = [line for line in lines if line.startswith("kafka ")]
        [store_line] = [line for line in lines if line.startswith("store ")]
        assert f"127.0.0.1:{mqtt}: unreachable" in mqtt_line
        assert kafka in kafka_line
        assert "reachable" not in kafka_line
        assert store_line.endswith(": reachable")

    def test_connect_passes_when_everything_is_reachable(
        self, services: None, make_settings: SettingsFactory, broker: LocalBroker, tmp_path: Path
    ) -> None:
        """This module's broker, the session's Kafka and a store of its own: exit 0."""
        env = _stack_env(make_settings(), tmp_path)
        result = _cli("check-config", "--connect", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count(": reachable") == 3
