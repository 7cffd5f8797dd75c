"""The floors of the code base: imports point down only, and no production module grows
past the size a reader can hold. Run it alone to see the graph:
``.venv/bin/pytest -q tests/test_architecture.py -s``."""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS: list[set[str]] = [
    {"schemas", "resilience"},  # values and wire models; the retry policy
    {"storage", "messaging", "rating"},  # adapters (ClickHouse, Kafka); the pricing engine
    {"ingest", "aggregator", "identity", "webhooks", "downlink"},  # the services
    {"billing"},  # the use cases
    {"insights"},  # inside sales' use cases, built on billing's
    {"api", "devices"},  # the delivery surfaces; the device simulator
    {"telemeter"},  # the composition root and the CLI
    {"bench"},  # the benchmarks
]
"""Lowest first. A package may import its own modules and those of lower floors only."""
FLOOR = {package: n for n, packages in enumerate(FLOORS) for package in packages}
MAX_LINES = 450
# Entry points: ``python -m <service>`` runs the composition root (the top floor).
ENTRY_POINTS = {"__main__.py"}


def imports(path: Path) -> set[str]:
    """The top-level project packages ``path`` imports (absolute imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found & FLOOR.keys()


def modules() -> list[tuple[str, Path]]:
    """Every production module with its package."""
    return [(p, path) for p in FLOOR for path in sorted((ROOT / p).rglob("*.py"))]


def graph() -> dict[str, set[str]]:
    """Package -> the project packages it imports."""
    edges: dict[str, set[str]] = defaultdict(set)
    for package, path in modules():
        if path.name not in ENTRY_POINTS:
            edges[package] |= imports(path) - {package}
    return edges


class TestLayers:
    """Imports point down only."""

    def test_every_package_has_a_floor(self) -> None:
        """Each top-level Python package of the project is placed on a floor."""
        packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
        assert packages <= FLOOR.keys(), sorted(packages - FLOOR.keys())

    def test_every_package_is_installed(self) -> None:
        """``pyproject.toml`` installs every package but the benchmarks (else the installed
        ``telemeter`` command cannot import it)."""
        listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]["find"]["include"]
        missing = sorted(p for p in FLOOR.keys() - {"bench"} if f"{p}*" not in listed)
        assert not missing, missing

    def test_every_package_is_type_checked(self) -> None:
        """``make lint`` runs mypy over every package."""
        makefile = (ROOT / "Makefile").read_text()
        line = next(x for x in makefile.splitlines() if "$(BIN)/mypy " in x)
        missing = sorted(FLOOR.keys() - set(line.split()))
        assert not missing, missing

    def test_no_upward_or_sideways_import(self) -> None:
        """No module imports a package on its own floor or above (entry points excepted)."""
        wrong = [
            f"{path.relative_to(ROOT)} imports {target}"
            for package, path in modules()
            if path.name not in ENTRY_POINTS
            for target in imports(path) - {package}
            if FLOOR[target] >= FLOOR[package]
        ]
        for package, targets in sorted(graph().items()):
            print(f"{package:>10} (floor {FLOOR[package]}) -> {', '.join(sorted(targets))}")
        assert not wrong, wrong


class TestModuleSize:
    """Modules stay small enough to read in one sitting."""

    def test_no_module_over_the_limit(self) -> None:
        """No production module outside bench/ is over ``MAX_LINES`` lines."""
        long = {
            str(path.relative_to(ROOT)): n
            for package, path in modules()
            if package != "bench" and (n := len(path.read_text().splitlines())) > MAX_LINES
        }
        assert not long, long
