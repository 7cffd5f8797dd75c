"""Rollups: usage per (device, meter, UTC hour) and per (device, meter, UTC day), recomputed
from the deduplicated raw readings -- never summed incrementally -- so that a usage answer
reads rows in proportion to its window, not to the history.

Why not an incremental sum: ClickHouse's incremental materialized views count a
redelivered message twice (they see inserts, not ``FINAL``), and a counter's delta
depends on the reading before it, which may arrive later. So:

- **Raw, twice.** ``readings`` (keyed by message, for deduplication) and its copy
  ``readings_by_time`` ordered by ``(device_id, meter, at)``, written by a materialized view
  in the same INSERT, so the raw part of an answer reads only its time range.
- **A dirty set, key-granular.** The same INSERT marks each (device, meter, UTC hour) it
  touched in ``rollup_marks``, with the insert's batch id; once the insert has returned,
  the writer *seals* the batch (``rollup_seals``, ``storage/readings.py``). A bucket with
  a mark not yet cleared is *dirty*: answers read its raw readings, never its rollup.
- **Recompute** (:meth:`RollupQueries.recompute`, run by ``aggregator.rollup_worker``):
  take sealed marks, recompute their hourly buckets from ``readings_by_time FINAL`` and
  their days from the day's hourly rows (the associative merge of
  ``storage/rollup_model.py``), write both, then clear exactly the marks taken. A mark
  written later -- even for the same bucket, even during the recompute -- is not cleared,
  so its bucket stays dirty until a later pass. Sealing first matters on a server, where
  an insert's rows and its marks need not become visible at the same instant: a sealed
  batch's rows are all visible, so the recompute that clears its marks has read them.
  Marks of a batch never sealed (its writer died after the insert) count as sealed after
  ``UNSEALED_GRACE_S``.
- **Exactness.** A rollup row is a function of its bucket's raw readings only: the counter
  delta of a bucket's first reading, which needs the reading before, is not in it; it is
  added at query time when segments meet (``merge``). So a late reading changes only its
  own hour and day (two buckets dirty, however late), a backdated reassignment changes no
  rollup (attribution happens at query time), and an answer -- rollup rows for clean
  buckets, raw rows for dirty and partial ones, merged in time order -- equals the answer
  from raw readings alone. ``storage/rollup_reads.py`` builds it; the equivalence is a
  property test (tests/storage/test_rollup_equivalence.py).
- A rollup row records the ``rollover`` its deltas were computed with; a meter whose
  rollover_max changed since is answered from raw until its buckets are recomputed.

Choices, and what they were measured against:

- *A second table, not a projection*, for the time order: with a projection ``ORDER BY
  (device_id, meter, at)`` on ``readings``, one device-day of a 2M-row table read 2,048
  rows without ``FINAL`` and 21,504 -- every granule of the device -- with it, because
  ClickHouse does not use projections under ``FINAL``, and every read here needs it.
- *UTC hours and days*, re-bucketed by the windows Python computes (``storage/windows.py``):
  one rollup serves every customer's timezone; a window edge inside an hour (a +05:45
  zone) costs that hour's raw rows. A local day in a zone that is not a whole-hour
  offset of UTC day boundaries is read as 24 hourly rows per device and meter. Blocks of
  8, 4 and 2 hours (a local day in ~6 units) were tried and left out: returning a row per
  block made batches slower than merging 24 hours per day in SQL, and read alone the
  hours were as fast once the next two choices were made.
- *One table for every width* (``rollups``, keyed by width), so that a plan reads one
  table: each table a query reads costs ClickHouse ~10 ms of fixed time on this machine.
  And *no ``FINAL``* on it: ``ORDER BY ... computed_at DESC LIMIT 1 BY`` the key keeps
  what ``FINAL`` keeps, read in key order at no measurable cost, where ``FINAL`` took
  ~40% of a batch's read. Its filter (``unit_where``) joins ranges less than a day apart
  and says which hours of the day are read: a month of local days was 62 ranges per
  width, and ClickHouse spent ~30 ms planning them.
- *Runs merged in SQL* (``MERGE_SQL``): adjacent units of one window are merged before
  they reach Python, so a batch of 64 customers returns a row per device and window, not
  per hour. Only a plan with at most ``FOLD_LIMIT`` merges reads its units as stored and
  merges them in Python (``rollup_reads._folded``, the same ``merge``); the limit says
  why it is 0.
- *The dirty set in ClickHouse* (``rollup_marks``), written by the same INSERT as the
  readings: no second write path to fail between them, and it survives restarts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from storage.core import utc as _utc
from storage.rollup_model import Segment, merge
from storage.rollup_plan import DAY, HOUR
from storage.rollup_reads import rollup_rows
from storage.rollup_sql import (
    BIG_QUERY,
    BUCKET_MS,
    DELTA_SQL,
    EMPTY_UNIT,
    MARKS_SQL,
    MAX_BUCKETS,
    RECOMPUTE_SQL,
    ROLLUP_COLUMNS,
    UNSEALED_GRACE_S,
    compact_where,
    hours_of,
    rollover_sql,
    segment_of,
    segment_row,
)
from storage.usage import UsageQueries
from storage.usage_reads import READ_SETTINGS, UsageShape


@dataclass(frozen=True, slots=True)
class RecomputeStats:
    """What one pass did: hourly buckets and days recomputed, marks cleared, and how long
    the oldest cleared mark had waited (seconds)."""

    hours: int
    days: int
    marks: int
    oldest_wait_s: float
    lags_s: tuple[float, ...] = ()


_MIGRATED = "migration:rollups:v1"
_ONE_TABLE = "migration:rollups:v2-one-table"
_MIGRATIONS = frozenset({_MIGRATED, _ONE_TABLE})
_BY_TIME = "device_id, meter, at, seq, idx, value, written_at, ver, voided"


class RollupQueries(UsageQueries):
    """Usage from rollups (``storage/rollup_reads.py``) and their recompute. ``rollups``
    off: every answer from raw readings, as before rollups (the reference)."""

    rollups = True

    async def _usage_batch(
        self, shape: UsageShape, customers: list[str]
    ) -> dict[str, list[Sequence[Any]]]:
        if shape.unassigned or not self.rollups:
            return await super()._usage_batch(shape, customers)

        async def query(sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
            settings = {**READ_SETTINGS, **BIG_QUERY}
            if self._reads is not None:
                return await self._reads.query(sql, params, settings)
            result = await self._run(self._client.query, sql, parameters=params, settings=settings)
            return result.result_rows

        return await rollup_rows(self._db, shape, customers, query)

    async def recompute(
        self,
        rollovers: Mapping[str, Decimal],
        limit: int = MAX_BUCKETS,
        grace_s: int = UNSEALED_GRACE_S,
    ) -> RecomputeStats:
        """One pass: recompute up to ``limit`` hourly buckets with sealed marks, their days,
        then clear exactly the marks taken. ``rollovers``: every meter's rollover_max."""
        marks = await self._rows(MARKS_SQL.format(db=self._db, grace=int(grace_s), limit=limit))
        if not marks:
            return RecomputeStats(0, 0, 0, 0.0)
        hours = {(d, m, _utc(h)) for d, m, h, _, _ in marks}
        spans = [(d, m, h, h + HOUR) for d, m, h in hours]
        await self._run(
            self._client.command,
            RECOMPUTE_SQL.format(
                db=self._db,
                width=1,
                delta=DELTA_SQL,
                bucket=BUCKET_MS.format(ms=3_600_000),
                rollover=rollover_sql(rollovers),
                ranges=compact_where(spans)
                + f" AND (device_id, meter, bucket) IN (SELECT device_id, meter, hour"
                f" FROM {self._db}.rollup_marks FINAL WHERE {compact_where(spans, 'hour')})",
            ),
            settings=BIG_QUERY,
        )
        days = {(d, m, h.replace(hour=0)) for d, m, h in hours}
        await self._recompute_days(days, rollovers)
        now = datetime.now(UTC)
        await self._insert(
            "rollup_marks",
            [[d, m, h, b, at, 1, 1] for d, m, h, b, at in marks],
            ["device_id", "meter", "hour", "batch", "marked_at", "ver", "cleared"],
        )
        lags = tuple((now - _utc(at)).total_seconds() for *_, at in marks)
        return RecomputeStats(len(hours), len(days), len(marks), max(lags), lags)

    async def _recompute_days(
        self, days: set[tuple[str, str, datetime]], rollovers: Mapping[str, Decimal]
    ) -> None:
        """Each day from its hourly rows, merged in order (exact, in Python)."""
        if not days:
            return
        sql = (
            f"SELECT device_id, meter, bucket, {ROLLUP_COLUMNS} "
            f"FROM {self._db}.rollups FINAL WHERE width = 1 AND readings > 0 AND "
            f"{compact_where([(d, m, t, t + DAY) for d, m, t in days], 'bucket')} "
            "ORDER BY device_id, meter, bucket"
        )
        rows = await self._run(self._client.query, sql, settings=BIG_QUERY)
        merged: dict[tuple[str, str, datetime], tuple[Segment, set[Decimal]]] = {}
        for device, meter, bucket, *rest in rows.result_rows:
            key = (device, meter, _utc(bucket).replace(hour=0))
            if key not in days:  # the filter covers more than the days asked
                continue
            seg, rollover = segment_of([*rest[:17], rest[18]]), Decimal(rest[17])
            current = rollovers.get(meter) or Decimal(0)
            found = merged.get(key)
            if found is None:
                merged[key] = (seg, {rollover})
            else:
                merged[key] = (merge(found[0], seg, current), found[1] | {rollover})
        stamp = datetime.now(UTC)
        data = []
        for (device, meter, day), (seg, used) in merged.items():
            current = rollovers.get(meter) or Decimal(0)
            # hours computed with another rollover than today's: the day can never be used
            rollover = current if used == {current} else Decimal(-1)
            head = [device, meter, hours_of(DAY), day]
            data.append([*head, *segment_row(seg), rollover, seg.written_at, stamp])
        for device, meter, day in days - merged.keys():  # every reading of the day voided
            data.append([device, meter, hours_of(DAY), day, *EMPTY_UNIT, stamp])
        await self._insert(
            "rollups",
            data,
            ["device_id", "meter", "width", "bucket", *ROLLUP_COLUMNS.split(", "), "computed_at"],
        )

    async def compact_marks(self) -> None:
        """Drop cleared marks for good (they are hidden already): keeps the dirty set as
        small as what is dirty now."""
        await self._run(
            self._client.command, f"OPTIMIZE TABLE {self._db}.rollup_marks FINAL CLEANUP"
        )

    async def rebuild_rollups(self, rollovers: Mapping[str, Decimal], slices: int = 16) -> float:
        """Compute every hourly and daily bucket from all raw readings, in ``slices`` slices of
        the devices, then drop every mark (a bulk load; returns the seconds it took). No
        insert may be in flight meanwhile: a mark dropped here whose rows became visible
        only after the slice was read would leave its bucket stale. The incremental pass
        (:meth:`recompute`) has no such condition."""
        began = time.monotonic()
        await self._run(self._client.command, f"TRUNCATE TABLE {self._db}.rollup_marks")
        await self._compute_all(rollovers, slices)
        return time.monotonic() - began

    async def _compute_all(self, rollovers: Mapping[str, Decimal], slices: int) -> None:
        """Rollups of every width (hours, days) from every raw reading."""
        for width in (HOUR, DAY):
            ms = width // timedelta(milliseconds=1)
            for i in range(slices):
                await self._run(
                    self._client.command,
                    RECOMPUTE_SQL.format(
                        db=self._db,
                        width=hours_of(width),
                        delta=DELTA_SQL,
                        bucket=BUCKET_MS.format(ms=ms),
                        rollover=rollover_sql(rollovers),
                        ranges=f"cityHash64(device_id) % {slices} = {i}",
                    ),
                )

    async def ensure_rollups(self, rollovers: Mapping[str, Decimal]) -> bool:
        """Once per database: readings stored before rollups existed get their time-ordered
        copy and their rollups, and rollups stored in a table per width (before ``rollups``)
        are computed again in ``rollups``; idempotent, so a start that died
        half-way does it again. Inserts may run meanwhile: their own marks keep their
        buckets dirty. Returns whether it had anything to do."""
        done = {
            key
            for (key,) in await self._rows(
                f"SELECT DISTINCT key FROM {self._db}.claims"
                " WHERE has({keys:Array(String)}, key)",
                {"keys": list(_MIGRATIONS)},
            )
        }
        if len(done) == len(_MIGRATIONS):
            return False
        legacy = (await self._rows(f"SELECT count() FROM {self._db}.readings"))[0][0]
        if legacy and _MIGRATED not in done:
            await self._run(
                self._client.command,
                f"INSERT INTO {self._db}.readings_by_time ({_BY_TIME}) SELECT {_BY_TIME}"
                f" FROM {self._db}.readings FINAL",
            )
        if legacy:  # no rollups yet, or rollups in a table per width: all of them anew
            await self._compute_all(rollovers, 16)
        for old in ("rollup_hourly", "rollup_daily"):  # replaced by ``rollups``
            await self._ddl(f"DROP TABLE IF EXISTS {self._db}.{old}")
        await self._insert(
            "claims",
            [[key, "ensure_rollups", "", datetime.now(UTC)] for key in _MIGRATIONS - done],
            ["key", "writer", "payload", "claimed_at"],
        )
        return bool(legacy)
