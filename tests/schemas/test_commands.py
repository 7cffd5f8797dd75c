"""The downlink's JSON Schema (``schemas/commands.schema.json``) agrees with the models the
dispatcher uses: what it sends validates as a command, what the simulator answers as a
result, and answers the dispatcher refuses are refused by the schema too."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from devices.device_commands import execute
from schemas.commands import Command, CommandResult, CommandSpec, CommandStatus

SCHEMA: dict[str, Any] = json.loads(
    files("schemas").joinpath("commands.schema.json").read_text(encoding="utf-8")
)


def _valid(doc: dict[str, Any], part: str) -> bool:
    schema = {**SCHEMA, "$ref": f"#/$defs/{part}"}
    schema.pop("oneOf")
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError:
        return False
    return True


class TestSchema:
    """The contract and the code say the same."""

    def test_the_examples_are_valid(self) -> None:
        """Both examples validate, each as its part."""
        command, result = SCHEMA["examples"]
        assert _valid(command, "command")
        assert _valid(result, "result")
        assert CommandResult.model_validate(result).status is CommandStatus.SUCCEEDED

    def test_what_the_dispatcher_sends_is_a_command(self) -> None:
        """Command.wire() of a stored command validates."""
        now = datetime(2026, 12, 3, 8, tzinfo=UTC)
        spec = CommandSpec(name="refill_scheduled", params={"cartridge": "TN-247"})
        command = Command(
            command_id="cmd_1",
            device_id="printer-1",
            name=spec.name,
            params=spec.params,
            status=CommandStatus.CREATED,
            created_at=now,
            expires_at=now + timedelta(hours=1),
        )
        assert _valid(json.loads(json.dumps(command.wire())), "command")

    @pytest.mark.parametrize(
        ("kind", "name"),
        [
            ("door", "lock"),
            ("door", "unlock"),
            ("printer", "refill_scheduled"),
            ("printer", "lock"),
        ],
    )
    def test_what_the_simulator_answers_is_a_result(self, kind: str, name: str) -> None:
        """succeeded for what its kind knows, rejected otherwise; both valid."""
        status, detail = execute(kind, {"name": name})
        answer = {"command_id": "cmd_1", "status": status, "detail": detail}
        assert _valid(answer, "result")
        assert CommandResult.model_validate(answer).status.value == status

    @pytest.mark.parametrize("status", ["sent", "timed_out", "done"])
    def test_a_device_cannot_answer_what_only_telemeter_says(self, status: str) -> None:
        """sent, timed_out (Telemeter's statuses) and unknown ones: refused by both."""
        answer = {"command_id": "cmd_1", "status": status}
        assert not _valid(answer, "result")
        with pytest.raises(ValidationError):
            CommandResult.model_validate(answer)
