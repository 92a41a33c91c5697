"""The manual API's request models and the types of its other answers.

Imported on the first body to parse (or the first ``GET /openapi.json``), not at
cold start: a process that only serves events never builds a pydantic model.

A request model is the one validation of a body: shape, types, unknown fields,
and the id rule itself (``ids.validate_id``, the one place ids are checked), so
the parsed model becomes a ``TaskRequest`` as it is.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from failjob_reaper._text import printable
from failjob_reaper.errors import InvalidInput
from failjob_reaper.events import TaskRequest
from failjob_reaper.ids import validate_id
from failjob_reaper.outcomes import Causation

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""The id rule of ``failjob_reaper.ids`` as a JSON Schema pattern, for the document;
``tests/test_http_api.py`` checks that the two agree."""

INVALID_INPUT = "invalid_input"
"""The pydantic error type of a value that is well typed but refused (a bad id,
another project): answered with the code ``invalid_input``, as on the event path."""


def _plain_id(value: str, info: ValidationInfo) -> str:
    try:
        return validate_id(value, info.field_name or "id")
    except InvalidInput as exc:
        raise PydanticCustomError(INVALID_INPUT, "{reason}", {"reason": str(exc)}) from None


IdStr = Annotated[
    str,
    AfterValidator(_plain_id),
    WithJsonSchema({"type": "string", "pattern": ID_PATTERN, "minLength": 1, "maxLength": 64}),
]

_STRICT = ConfigDict(extra="forbid", strict=True)


class RetryRequest(BaseModel):
    """Decide one failed task now, by the same path as an event."""

    model_config = _STRICT

    failure_job_id: IdStr = Field(
        description="The task, as the configured SDRS_FAILURE_JOB_ID_FIELD of its record "
        "(resource_id by default)."
    )
    server_group_id: IdStr | None = Field(
        None, description="Protection group to look in first (a hint, never required)."
    )
    dry_run: bool = Field(False, description="Decide and report, never delete.")
    force: bool = Field(False, description="Skip age, rules and keep-latest; holds still apply.")

    def task(self, *, id_field: str, causation: Causation) -> TaskRequest:
        return TaskRequest(
            task_id=self.failure_job_id,
            match_field=id_field,
            trigger="http",
            causation=causation,
            server_group_id=self.server_group_id,
            dry_run=self.dry_run,
            force=self.force,
        )


class DeleteFailedData(BaseModel):
    """The data of an earlier ``delete_failed`` outcome (other fields are ignored)."""

    model_config = ConfigDict(extra="allow", strict=True)

    failure_job_id: IdStr
    server_group_id: IdStr | None = None
    # Checked, never trusted; not in the public document, which names no project.
    project_id: SkipJsonSchema[str | None] = None

    @field_validator("project_id")
    @classmethod
    def _this_project(cls, value: str | None, info: ValidationInfo) -> str | None:
        served = (info.context or {}).get("project_id")
        if value is not None and value != served:
            raise PydanticCustomError(
                INVALID_INPUT, "event is for project {other}, this deployment serves {served}",
                {"other": printable(value, 70), "served": served},
            )
        return value


class DeleteFailedEvent(BaseModel):
    """A structured-mode CloudEvent of an earlier ``delete_failed`` outcome, retried as is.

    ``force`` and ``dry_run`` are never taken from an event.
    """

    model_config = ConfigDict(extra="allow", strict=True)

    specversion: Literal["1.0"]
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: Literal["sdrs.failurejob.delete_failed"]
    data: DeleteFailedData

    def task(self, *, id_field: str, causation: Causation) -> TaskRequest:
        return TaskRequest(
            task_id=self.data.failure_job_id,
            match_field=id_field,
            trigger="http",
            causation=causation,
            server_group_id=self.data.server_group_id,
        )


class SweepBody(BaseModel):
    """Start a sweep of every failed task of the project (or of one protection group).

    The document of what ``events.sweep_request`` accepts, which is the parser: the
    same sweep data on every path (docs/events.md). ``tests/test_http_api.py`` holds
    the keys together; schemathesis, the behaviour.
    """

    model_config = _STRICT

    dry_run: bool = Field(False, description="Decide and report, never delete.")
    server_group_id: IdStr | None = Field(
        None, description="Sweep this protection group only."
    )
    # Accepted when it is this deployment's project; not in the public document.
    project_id: SkipJsonSchema[str | None] = None
