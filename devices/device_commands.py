"""What the simulator's devices do with a command (``schemas/commands.py``, the downlink):
printers know ``refill_scheduled``, doors ``lock`` and ``unlock``; the rest they reject."""

from __future__ import annotations

from typing import Any

COMMANDS = {
    "printer": {"refill_scheduled": "refill noted: a new cartridge is on its way"},
    "door": {"lock": "locked", "unlock": "unlocked"},
}
"""What each kind of simulated device does (the answer's detail), by command name."""


def execute(kind: str, command: dict[str, Any]) -> tuple[str, str]:
    """A simulated device executing ``command``: succeeded for what its kind knows,
    rejected otherwise (``schemas/commands.py``)."""
    done = COMMANDS.get(kind, {}).get(str(command.get("name")))
    if done is None:
        return "rejected", f"a {kind or 'device'} does not know {command.get('name')!r}"
    return "succeeded", done
