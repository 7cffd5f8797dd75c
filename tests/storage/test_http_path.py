"""The ``http://`` DSN: the store through clickhouse-connect's HTTP client, against the
ClickHouse engine of chDB behind ``tests/chdb_http.py`` (no ClickHouse server can run
here). What runs: the HTTP transport, compression, URL settings and query parameters,
Native results, inserts (Native and the fast path's JSONEachRow), errors and logins, with
every statement executed by a real engine. What does not: a server's own HTTP handler,
sessions, users, a cluster (README, "Scale-out").

Found by it: the store shares one client across threads, and over HTTP clickhouse-connect
gave that client a session, in which a server runs one query at a time (clickhouse-connect
refused the second: "concurrent queries within the same session"); the store now opens
HTTP clients without a session.

The store's own suites run over it here too: the nine in SUITES in ``make test``; all of
``tests/storage`` by hand (``TELEMETER_TEST_CLICKHOUSE_DSN=http://...``, about 10 minutes:
``test_rollup_equivalence`` alone takes 6 through the front's one-statement-at-a-time lock).
A difference that run showed in ``test_rollup_equivalence`` was the front's (it decompressed
only the first lz4 frame of an insert: 8,192 of its rows), not Telemeter's."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.errors import StoreUnavailable
from storage.store import ClickHouseStore
from telemeter.config import REPO_ROOT
from telemeter.local_broker import free_port

pytestmark = pytest.mark.integration

PASSWORD = "front-s3cret-pw"
SUITES = [
    "tests/storage/test_insert_events.py",
    "tests/storage/test_concurrent_writers.py",
    "tests/storage/test_usage_store.py",
    "tests/storage/test_usage_reads.py",
    "tests/storage/test_voids.py",
    "tests/storage/test_dead_letters.py",
    "tests/storage/test_messages.py",
    "tests/storage/test_rollups.py",
    "tests/storage/test_tz_sql.py",
]


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The HTTP front on a chDB of its own (another process: one chDB per process); the
    DSN of its user."""
    port = free_port()
    data = tmp_path_factory.mktemp("chdb-http") / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.chdb_http", str(port), str(data), "telemeter", PASSWORD],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        yield f"http://telemeter:{PASSWORD}@127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


class TestHttpPath:
    """The store over HTTP."""

    async def test_concurrent_reads_on_one_store(self, front: str) -> None:
        """Twenty reads at once on one store's client all answer (over HTTP with a session
        the second was refused)."""
        store = await ClickHouseStore.connect(front, "http_concurrent")
        try:
            answers = await asyncio.gather(
                *(store._rows("SELECT 1 + sleep(0.01)") for _ in range(20))
            )
            assert [a[0][0] for a in answers] == [1] * 20
            now = datetime.now(UTC)
            claims = await asyncio.gather(
                *(store.claim("http/claim", f"writer-{i}", "", now) for i in range(8))
            )
            assert len({c.writer for c in claims}) == 1
        finally:
            await store.close()

    async def test_a_wrong_password_is_refused_without_showing_it(self, front: str) -> None:
        """The server's 516 becomes StoreUnavailable naming the masked DSN; neither the
        wrong password nor the right one is in the message."""
        wrong = front.replace(PASSWORD, "not-the-password")
        with pytest.raises(StoreUnavailable) as refused:
            await ClickHouseStore.connect(wrong, "http_refused")
        text = str(refused.value)
        assert "***@127.0.0.1" in text
        assert "not-the-password" not in text
        assert PASSWORD not in text

    def test_the_store_suites_pass_over_http(self, front: str, tmp_path: Path) -> None:
        """The storage suites listed in SUITES, run over the HTTP DSN in a pytest of their
        own: all pass."""
        env = {**os.environ, "TELEMETER_TEST_CLICKHOUSE_DSN": front}
        env.pop("PYTEST_XDIST_WORKER", None)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:xdist",
                "-q",
                "-p",
                "no:cacheprovider",
                *SUITES,
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        assert done.returncode == 0, tail
        assert " passed" in tail, tail
        assert "failed" not in tail, tail
