"""Commands to devices in the store: one row per write of a command, the highest ``ver``
wins. ``ver`` is the status's rank (``schemas.commands.RANK``) then the write's time, so a
status never goes back, whatever order the writes land in: a PUBACK (delivered) recorded
after the device's answer (succeeded) loses to it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from schemas.commands import RANK, Command, CommandStatus
from storage.core import StoreCore
from storage.errors import NotFound

TABLES = {
    "commands": """
        CREATE TABLE IF NOT EXISTS {db}.commands (
            command_id String,
            device_id String,
            status LowCardinality(String),
            body String,                 -- the command as JSON (schemas.commands.Command)
            ver UInt64
        ) ENGINE = ReplacingMergeTree(ver) ORDER BY command_id
    """,
}


def _ver(command: Command, now: datetime) -> int:
    return RANK[command.status] * 10**15 + int(now.timestamp() * 1000)


class CommandQueries(StoreCore):
    """The ``commands`` table."""

    async def put_command(self, command: Command, now: datetime) -> None:
        """Write a command (new, or with a new status)."""
        row = [
            command.command_id,
            command.device_id,
            command.status.value,
            command.model_dump_json(),
            _ver(command, now),
        ]
        await self._insert("commands", [row], ["command_id", "device_id", "status", "body", "ver"])

    async def get_command(self, command_id: str) -> Command:
        """One command, or NotFound."""
        rows = await self._rows(
            f"SELECT body FROM {self._db}.commands FINAL WHERE command_id = {{c:String}}",
            {"c": command_id},
        )
        if not rows:
            raise NotFound(f"command {command_id!r} does not exist")
        return Command.model_validate_json(rows[0][0])

    async def list_commands(
        self, device_id: str | None = None, statuses: Sequence[CommandStatus] = ()
    ) -> list[Command]:
        """Commands (of ``device_id``; in ``statuses``), newest first."""
        rows = await self._rows(
            f"SELECT body FROM {self._db}.commands FINAL "
            "WHERE ({d:String} = '' OR device_id = {d:String}) "
            "AND (empty({s:Array(String)}) OR has({s:Array(String)}, status)) "
            "ORDER BY JSONExtractString(body, 'created_at') DESC, command_id DESC",
            {"d": device_id or "", "s": [s.value for s in statuses]},
        )
        return [Command.model_validate_json(body) for (body,) in rows]
