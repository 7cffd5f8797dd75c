"""``ComponentProcess``: one ``telemeter`` subcommand as a child process with its own log,
as the chaos run, the delivery tests and the benchmarks start the components."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from telemeter.config import REPO_ROOT


class ComponentProcess:
    """One ``telemeter`` subcommand as a child process with its own log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self._args, self._env, self._log_path = name, args, env, log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Start the process: its log begins afresh at a run's first start (readiness is
        read from it: an earlier run's lines would pass for this one's) and is appended to
        at each restart."""
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self._log_path.open("ab" if self.starts else "wb")
        self._proc = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
            [sys.executable, "-m", "telemeter", *self._args],
            env={**os.environ, **self._env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        self.starts += 1

    def kill9(self) -> None:
        """SIGKILL, as a crash."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()

    def stop(self) -> None:
        """SIGTERM and wait (then SIGKILL)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill9()

    def alive(self) -> bool:
        """Still running."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id of the current start, if started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """How the process exited, if it has."""
        return self._proc.poll() if self._proc is not None else None

    def log_contains(self, marker: str, occurrences: int) -> bool:
        """Whether ``marker`` appears at least ``occurrences`` times in the log; a process
        that exited before it did is an error (a component must not give up by itself)."""
        text = self._log_path.read_text(errors="replace") if self._log_path.exists() else ""
        if text.count(marker) >= occurrences:
            return True
        if self._proc is not None and self._proc.poll() is not None:
            tail = " | ".join(text.strip().splitlines()[-3:])
            raise RuntimeError(f"{self.name} exited ({self._proc.returncode}) by itself: {tail}")
        return False
