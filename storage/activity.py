"""When each device last reported, and how often it usually does: what insights count as
active and silent devices (``insights/customer.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from storage.core import StoreCore
from storage.core import utc as _utc


@dataclass(frozen=True, slots=True)
class Activity:
    """A device's reports in a window: how many distinct reading times, the first, the
    last (voided readings count: the device reported)."""

    device_id: str
    reports: int
    first_at: datetime
    last_at: datetime


class ActivityQueries(StoreCore):
    """Reads of ``readings_by_time`` (ordered by device, meter, time)."""

    async def device_activity(
        self, device_ids: Sequence[str], since: datetime, until: datetime
    ) -> dict[str, Activity]:
        """Each device's reports in [since, until); a device without any is absent."""
        if not device_ids:
            return {}
        rows = await self._rows(
            "SELECT device_id, uniqExact(at), min(at), max(at) "
            f"FROM {self._db}.readings_by_time "
            "WHERE device_id IN {ids:Array(String)} "
            "AND at >= {s:DateTime64(3, 'UTC')} AND at < {u:DateTime64(3, 'UTC')} "
            "GROUP BY device_id",
            {"ids": list(device_ids), "s": since, "u": until},
        )
        return {d: Activity(d, int(n), _utc(a), _utc(b)) for d, n, a, b in rows}
