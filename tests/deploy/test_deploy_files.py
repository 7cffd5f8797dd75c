"""``deploy/``'s files checked offline by the tools that would read them: the compose file
by ``docker-compose config`` (Debian's 1.29), the Kubernetes manifests by
``kubernetes-validate --strict`` (Kubernetes 1.33 schemas), Prometheus' config and alert
rules by ``promtool`` (the rules also unit-tested), and every metric the rules and the
Grafana dashboard name against the metrics the code defines. Each tool is shown to fail
on a broken copy, so a pass means something. No Docker engine or cluster runs here: these
prove the files are well-formed and say what they should, not that the images run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import aggregator.metrics
import billing.alerts
import billing.closer
import downlink.dispatcher
import ingest.metrics
import webhooks.sender
from telemeter.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
SECRETS = {
    name: "set-by-the-test"
    for name in (
        "KAFKA_CLUSTER_ID",
        "KAFKA_CONTROLLER_PASSWORD",
        "KAFKA_ADMIN_PASSWORD",
        "KAFKA_BRIDGE_PASSWORD",
        "KAFKA_AGGREGATOR_PASSWORD",
        "KAFKA_API_PASSWORD",
        "MQTT_BRIDGE_PASSWORD",
        "CLICKHOUSE_PASSWORD",
        "TELEMETER_API__ADMIN_TOKEN",
    )
}
# what the code defines (imported above so that their metrics are registered)
DEFINING = [aggregator.metrics, billing.alerts, billing.closer, downlink.dispatcher]
DEFINING += [ingest.metrics, webhooks.sender]


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} not found: make test installs it (deploy/services.sh packages)")
    return found


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, env=env, cwd=cwd, check=False
    )


def _compose(path: Path, secrets: dict[str, str], *extra: str) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in SECRETS} | secrets
    return _run(_tool("docker-compose"), "-f", str(path), "config", *extra, env=env)


class TestCompose:
    """``deploy/compose.yaml``."""

    def test_valid_and_complete(self) -> None:
        """It passes ``config -q``; it has the broker, three Kafka nodes with replication
        3 and two in sync, the ClickHouse server, bridge, aggregator, API, Prometheus."""
        path = DEPLOY / "compose.yaml"
        checked = _compose(path, SECRETS, "-q")
        assert checked.returncode == 0, checked.stderr
        rendered = yaml.safe_load(_compose(path, SECRETS).stdout)
        services = rendered["services"]
        wanted = {"mosquitto", "kafka-1", "kafka-2", "kafka-3", "clickhouse", "bridge"}
        assert wanted | {"aggregator", "api", "prometheus"} <= set(services)
        for n in (1, 2, 3):
            env = services[f"kafka-{n}"]["environment"]
            assert env["KAFKA_NODE_ID"] == str(n)
            assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == (
                "3",
                "2",
            )
        api = services["api"]["environment"]
        assert api["TELEMETER_KAFKA__REPLICATION_FACTOR"] == "3"
        assert api["TELEMETER_KAFKA__MIN_INSYNC_REPLICAS"] == "2"
        assert api["TELEMETER_STORE__DSN"].startswith("http://")

    def test_a_missing_secret_is_named(self) -> None:
        """Without CLICKHOUSE_PASSWORD the file does not render, and says which."""
        secrets = {k: v for k, v in SECRETS.items() if k != "CLICKHOUSE_PASSWORD"}
        checked = _compose(DEPLOY / "compose.yaml", secrets, "-q")
        assert checked.returncode != 0
        assert "CLICKHOUSE_PASSWORD" in checked.stderr

    def test_a_broken_copy_fails(self, tmp_path: Path) -> None:
        """A port list written as a number is refused."""
        text = (DEPLOY / "compose.yaml").read_text()
        broken = tmp_path / "compose.yaml"
        broken.write_text(text.replace('ports: ["8000:8000"]', "ports: 8000", 1))
        assert _compose(broken, SECRETS, "-q").returncode != 0


class TestKubernetes:
    """``deploy/kubernetes/*.yaml``."""

    def _validate(self, *paths: Path) -> Any:
        tool = _tool("kubernetes-validate")
        return _run(tool, "-k", "1.33.0", "--strict", *map(str, paths))

    def _resources(self) -> list[dict[str, Any]]:
        return [d for p in KUBERNETES for d in yaml.safe_load_all(p.read_text()) if d]

    def test_valid(self) -> None:
        """Every manifest passes ``--strict`` (no unknown field) on Kubernetes 1.33."""
        checked = self._validate(*KUBERNETES)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    def test_a_broken_copy_fails(self, tmp_path: Path) -> None:
        """An unknown field in a Deployment is refused."""
        broken = tmp_path / "api.yaml"
        text = (DEPLOY / "kubernetes" / "api.yaml").read_text()
        broken.write_text(text.replace("  replicas: 3\n", "  replicas: 3\n  replicaz: 3\n", 1))
        assert self._validate(broken).returncode != 0

    def test_probes_resources_and_budgets(self) -> None:
        """Every container has liveness, readiness and startup probes and resource
        requests; the API's are /healthz and /readyz; every Deployment has a
        PodDisruptionBudget; the API has a HorizontalPodAutoscaler."""
        found = self._resources()
        deployments = {d["metadata"]["name"]: d for d in found if d["kind"] == "Deployment"}
        assert set(deployments) == {"telemeter-api", "telemeter-bridge", "telemeter-aggregator"}
        for d in deployments.values():
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(c)
                assert {"cpu", "memory"} <= set(c["resources"]["requests"])
        api = deployments["telemeter-api"]["spec"]["template"]["spec"]["containers"][0]
        paths = (api["livenessProbe"]["httpGet"]["path"], api["readinessProbe"]["httpGet"]["path"])
        assert paths == ("/healthz", "/readyz")
        budgets = {
            d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
            for d in found
            if d["kind"] == "PodDisruptionBudget"
        }
        assert budgets == set(deployments)
        scaled = [
            d["spec"]["scaleTargetRef"]["name"]
            for d in found
            if d["kind"] == "HorizontalPodAutoscaler"
        ]
        assert scaled == ["telemeter-api"]


class TestPrometheus:
    """``deploy/prometheus/``: the scrape config, the alert rules and their unit tests."""

    def test_config_and_rules(self) -> None:
        """``promtool check config`` (which checks the rules it names) passes."""
        checked = _run(
            _tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

    def test_rules_fire_as_tested(self) -> None:
        """``promtool test rules``: lag over 100,000 for 5 minutes pages, a bridge that
        receives and forwards nothing pages, a process down for 2 minutes pages."""
        checked = _run(
            _tool("promtool"), "test", "rules", "rules.test.yml", cwd=DEPLOY / "prometheus"
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr

    def test_a_broken_rule_fails(self, tmp_path: Path) -> None:
        """An expression that does not parse is refused."""
        text = (DEPLOY / "prometheus" / "rules.yml").read_text()
        broken = tmp_path / "rules.yml"
        broken.write_text(text.replace("max(telemeter_aggregator_consumer_lag)", "max(", 1))
        assert _run(_tool("promtool"), "check", "rules", str(broken)).returncode != 0


def _defined() -> set[str]:
    """Every sample name the code's ``telemeter_*`` metrics expose."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("telemeter_"):
            names.add(family.name)
            names.update(s.name for s in family.samples)
            if family.type == "histogram":
                names.update(f"{family.name}_{x}" for x in ("bucket", "sum", "count"))
            if family.type == "counter":
                names.add(f"{family.name}_total")
    return names


def _named(text: str) -> set[str]:
    return set(re.findall(r"\btelemeter_[a-z0-9_]+", text))


class TestMetricNames:
    """The rules and the dashboard ask for metrics that exist."""

    def test_rules(self) -> None:
        """Every ``telemeter_*`` name in the alert rules is one the code defines."""
        named = _named((DEPLOY / "prometheus" / "rules.yml").read_text())
        assert named
        assert named <= _defined(), named - _defined()

    def test_dashboard(self) -> None:
        """The dashboard is JSON with a query per panel, each naming defined metrics."""
        board = json.loads((DEPLOY / "grafana" / "telemeter.json").read_text())
        exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
        assert len(board["panels"]) >= 6
        assert all(exprs)
        named = _named(" ".join(exprs))
        assert named <= _defined(), named - _defined()
        assert {"telemeter_aggregator_consumer_lag", "telemeter_freshness_seconds_bucket"} <= named
