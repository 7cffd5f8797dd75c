"""Messages of the load generator, built from string templates, with their ground truth.

The payload follows the wire contract (``schemas/telemetry.py``) but is assembled from
pre-built string pieces: pydantic or ``json.dumps`` per message would cap a worker well
below the 10,000 messages/s it has to offer."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class DeviceSlot:
    """A device as a worker sees it: its id, its one delta meter and its customer."""

    device_id: str
    meter: str
    customer_id: str


def wire_time(epoch_s: float) -> str:
    """Wall-clock seconds as a wire timestamp (UTC, milliseconds, ``Z``)."""
    ms = int(epoch_s * 1000)
    stamp = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms % 1000:03d}Z"


class MessageFactory:
    """Builds the next message of a round-robin over the worker's devices and accounts it.

    Deterministic for a given seed and device list: the same devices in the same order get
    the same values and reading counts (timestamps and seq offsets come from the clock).
    Values are integers 1..9 of delta meters, so the truth is an exact sum per
    (customer, meter) plus a reading count; ``seq`` is ``seq_base + n`` for a device's n-th
    message (n = 1, 2, ...)."""

    POOL = 4099  # a prime, so value and count cycles do not line up with the device count

    def __init__(
        self,
        devices: list[DeviceSlot],
        *,
        topic_prefix: str,
        seq_base: int,
        readings: tuple[int, int],
        seed: int,
    ) -> None:
        low, high = readings
        if not 1 <= low <= high <= 1000:
            raise ValueError("readings per message must satisfy 1 <= low <= high <= 1000")
        rng = random.Random(seed)  # noqa: S311 - reproducible load, not security
        self._devices = devices
        self._topics = [f"{topic_prefix}devices/{d.device_id}/telemetry" for d in devices]
        self._heads = ['{"device_id":"' + d.device_id + '","seq":' for d in devices]
        self._readings = ['{"meter":"' + d.meter + '","value":' for d in devices]
        keys = sorted({(d.customer_id, d.meter) for d in devices})
        index = {k: i for i, k in enumerate(keys)}
        self.keys = keys
        self._key_of = [index[(d.customer_id, d.meter)] for d in devices]
        self.quantities = [0] * len(keys)
        self.counts = [0] * len(keys)
        self._seq_base = seq_base
        self._seqs = [0] * len(devices)
        values = [rng.randint(1, 9) for _ in range(self.POOL)]
        self._values = values + values[:high]  # a slice never wraps
        self._value_at = 0
        self._sizes = [rng.randint(low, high) for _ in range(self.POOL)]
        self._size_at = 0
        self._next = 0
        self.last_device = 0  # index of the device of the latest message
        self.messages = 0
        self.readings = 0

    def next(self, stamp: str) -> tuple[str, bytes]:
        """The next message, stamped ``stamp`` (sent_at and every reading's at)."""
        i = self.last_device = self._next
        self._next = i + 1 if i + 1 < len(self._devices) else 0
        self._seqs[i] += 1
        k = self._sizes[self._size_at]
        self._size_at = (self._size_at + 1) % self.POOL
        v = self._value_at
        values = self._values[v : v + k]
        self._value_at = (v + k) % self.POOL
        tail = ',"at":"' + stamp + '"}'
        head = self._readings[i]
        body = ",".join([head + str(x) + tail for x in values])
        key = self._key_of[i]
        self.quantities[key] += sum(values)
        self.counts[key] += k
        self.messages += 1
        self.readings += k
        seq = self._seq_base + self._seqs[i]
        payload = (
            self._heads[i] + str(seq) + ',"sent_at":"' + stamp + '","readings":[' + body + "]}"
        )
        return self._topics[i], payload.encode()

    def truth(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(customer, meter) -> (sum of values, readings) of every message built."""
        return {k: (self.quantities[i], self.counts[i]) for i, k in enumerate(self.keys)}
