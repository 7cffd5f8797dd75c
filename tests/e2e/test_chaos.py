"""The short chaos run: every component killed or restarted once under load, then an
exact reconciliation. ``make chaos`` is the long version (24 kills over 5.5 minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemeter.chaos import COMPONENTS, ChaosConfig, ChaosRun, chaos_settings
from telemeter.config import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]


class TestChaos:
    """Crashes and broker restarts lose nothing and count nothing twice."""

    def test_short_chaos_run_reconciles_exactly(self, services: None, tmp_path: Path) -> None:
        """kill -9 of bridge, aggregator and Kafka and a Mosquitto restart during a run with
        duplicates, resets, late flushes and reassignments, everything logged in: missing 0,
        double-counted 0, and no secret of the run in any of its logs."""
        config = ChaosConfig(
            duration_s=50, kills=4, seed=3, rate=100, work_dir=tmp_path, settle_timeout_s=240
        )
        report = ChaosRun(config, chaos_settings(Settings(_env_file=None), config)).run()
        print(report.summary())
        assert sorted(name for _, name in report.kills) == sorted(COMPONENTS)
        assert report.simulation is not None
        assert report.simulation.duplicates_sent > 0
        assert report.simulation.late_messages > 0
        assert report.simulation.reassignments
        assert report.logs_scanned >= 3  # bridge, aggregator+API, broker (and Kafka's)
        assert report.leaks == [], report.summary()
        assert report.exact, report.summary()
