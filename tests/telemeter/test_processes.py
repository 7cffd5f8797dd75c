"""``ComponentProcess``: a run's log starts afresh, and a component that exits by itself
is an error, not a wait (the chaos run once read an earlier run's "bridge_started" as its
own bridge's and published before that bridge had subscribed)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from telemeter.processes import ComponentProcess


class TestComponentProcess:
    """The log a run's readiness is read from."""

    def test_the_first_start_begins_a_fresh_log(self, tmp_path: Path) -> None:
        """An earlier run's marker is gone at the first start and kept at a restart."""
        log = tmp_path / "x.log"
        log.write_text("bridge_started (an earlier run)\n")
        process = ComponentProcess("x", ["--help"], {}, log)
        process.start()
        process.stop()
        assert "earlier run" not in log.read_text()
        first = log.read_text()
        process.start()
        process.stop()
        assert log.read_text().startswith(first)
        assert process.starts == 2

    def test_a_process_that_exits_before_its_marker_is_an_error(self, tmp_path: Path) -> None:
        """Waiting for a marker of a process that has exited raises with its log's tail."""
        process = ComponentProcess("x", ["--help"], {}, tmp_path / "x.log")
        process.start()
        deadline = time.monotonic() + 60  # a hang guard, not a measurement
        while process.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.log_contains("usage", 1)
        with pytest.raises(RuntimeError, match=r"x exited \(0\) by itself"):
            process.log_contains("bridge_started", 1)
