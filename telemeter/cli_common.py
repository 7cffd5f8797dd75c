"""What every ``telemeter`` command shares: running its async main."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def run_async(main: Callable[[], Coroutine[Any, Any, int | None]]) -> int:
    """Run ``main`` to its exit status; 130 when a signal interrupted its start."""
    try:
        return asyncio.run(main()) or 0
    except (KeyboardInterrupt, asyncio.CancelledError):  # a signal while it was starting
        return 130
