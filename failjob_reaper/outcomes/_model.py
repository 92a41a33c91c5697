"""What an outcome carries (README, "Outcome events") and how its CloudEvent id is made.

One model, written once: the frozen dataclasses ``Causation``, ``Outcome`` and
``SweepSummary``. Each data field is declared here once: its type, its docstring (its
description in the schema) and, where the data is not the value itself, its serializer
(pydantic's ``Annotated`` metadata). Everything else comes from these declarations:

* the event data, ``as_data()``: built by reading the declarations once per class,
  without building a pydantic schema (cold start: an event function never builds one);
* the log fields, ``log_fields()``: the data fields named in the class's ``LOGGED``;
* a replayed first answer, ``from_data()``, and the JSON Schema of the data (the manual
  API's OpenAPI document): pydantic's view of the same classes, built on first use
  (``_data``).

A field that only serves the run time (the trace context of ``Causation``) is marked
``Field(exclude=True)``: it is not data. ``dataclasses.replace`` works as on any
dataclass.
"""

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal, Self, cast, get_args

from pydantic import ConfigDict, Field, PlainSerializer, WithJsonSchema, with_config
from pydantic.fields import FieldInfo
from typing_extensions import TypedDict  # pydantic needs it for a schema on Python < 3.12

from failjob_reaper._text import iso_utc

TYPE_PREFIX = "sdrs.failurejob."
OutcomeName = Literal[
    "deleted",
    "already_deleted",
    "retained",
    "would_delete",
    "delete_failed",
    "rejected",
]
OUTCOMES: tuple[OutcomeName, ...] = get_args(OutcomeName)
SWEEP_COMPLETED: Final = "sweep_completed"
Trigger = Literal["event", "timer", "http", "cli"]
"""What started the decision (the ``trigger`` of every outcome)."""

OutcomeData = dict[str, Any]
"""An ``Outcome``'s event data (``as_data()``); the answer of ``POST /retry``."""
SweepSummaryData = dict[str, Any]
"""A ``SweepSummary``'s event data (``as_data()``); the answer of ``POST /sweep``."""
CausationData = dict[str, Any]
"""A ``Causation``'s part of the data: ``id``, ``source``, ``type``."""

# Fixed namespace so that the same (input, task, outcome) always gets the same id.
_ID_NAMESPACE = uuid.UUID("6f1c3c52-5b0e-4f0e-9d53-6a4f7f2b9a10")

# Read by pydantic when the schema is built (``_data``), never at import: the data are
# answers (a field with a default is still always there), and a field's docstring is its
# description.
_CONFIG = ConfigDict(json_schema_serialization_defaults_required=True,
                     use_attribute_docstrings=True)

Count = Annotated[int, Field(ge=0)]


# -- the parts of the data that are not a plain value ----------------------------------


@with_config(_CONFIG)
class ErrorData(TypedDict):
    """Why a delete failed: the API's error code and message; worth a retry later?"""

    code: str | None
    """The task center's error code, when it gave one."""
    message: str
    retryable: bool
    """True for a transient failure (a later attempt may succeed): the input is then
    answered 5xx so that the trigger delivers it again."""


def _error_data(error: Mapping[str, Any] | None) -> ErrorData | None:
    if error is None:
        return None
    code = error.get("code")
    return {"code": None if code is None else str(code), "message": str(error.get("message", "")),
            "retryable": bool(error.get("retryable"))}


Error = Annotated[Mapping[str, Any] | None,
                  PlainSerializer(_error_data, return_type=ErrorData | None)]

if TYPE_CHECKING:
    OutcomeCounts = dict[str, int]
else:  # every outcome by name, from OUTCOMES itself
    OutcomeCounts = TypedDict("OutcomeCounts", {name: Count for name in OUTCOMES})
    OutcomeCounts.__doc__ = "Tasks per outcome (every outcome is named, 0 included)."


def _counts(counts: Mapping[str, int]) -> OutcomeCounts:
    return {name: counts.get(name, 0) for name in OUTCOMES}


Counts = Annotated[Mapping[str, int], PlainSerializer(_counts, return_type=OutcomeCounts)]
Seconds = Annotated[float, Field(ge=0)]


def _milliseconds(value: float) -> float:
    return round(value, 3)


Duration = Annotated[Seconds, PlainSerializer(_milliseconds, return_type=Seconds)]


def _iso(value: datetime | None) -> str | None:
    # The one format of every instant the product shows (plan, explain, outcomes).
    return iso_utc(value)


Instant = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
"""A moment, written ``2026-12-05T10:20:30Z`` (UTC, whole seconds)."""


NotData = Field(exclude=True)
"""Marks a field that serves the run time only: it is not part of the data."""


# -- the model ----------------------------------------------------------------------------


class _Data:
    """``as_data``, ``log_fields`` and ``from_data`` of a model class, from its fields."""

    LOGGED: ClassVar[tuple[str, ...]] = ()
    """The data fields an outcome's log line carries (what a log query filters on)."""

    def as_data(self) -> dict[str, Any]:
        """The event data: every field but the excluded ones, as JSON values."""
        return {name: serialize(getattr(self, name)) for name, serialize in _plan(type(self))}

    def log_fields(self) -> dict[str, Any]:
        """The ``LOGGED`` fields, as the data has them."""
        plan = dict(_plan(type(self)))
        return {name: plan[name](getattr(self, name)) for name in self.LOGGED}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        """The object whose ``as_data()`` is ``data`` (a replayed first answer); raises
        ValueError for anything else: a corrupt record must not be replayed."""
        from failjob_reaper.outcomes._data import from_data

        return from_data(cls, data)


_SCALARS = (str, int, float)  # a tuple: isinstance is faster with one than with a union


def _plain(value: Any) -> Any:
    """A field's value as data where it declares no serializer (pydantic's JSON mode for
    the types these classes use: a test holds the two together)."""
    if value is None or isinstance(value, _SCALARS):  # most fields
        return value
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, _Data):
        return value.as_data()
    if isinstance(value, Mapping):
        return dict(value)
    return value


Plan = tuple[tuple[str, Callable[[Any], Any]], ...]
_PLANS: dict[type, Plan] = {}


def _plan(cls: type) -> Plan:
    """(name, serializer) of each data field of ``cls``, read from its declarations once."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = tuple(
            (field.name, _serializer(field.type)) for field in dataclasses.fields(cls)
            if not any(isinstance(m, FieldInfo) and m.exclude for m in _metadata(field.type)))
    return plan


def _metadata(annotation: object) -> tuple[object, ...]:
    """The ``Annotated`` metadata of a field's type (Python flattens nested ones)."""
    metadata: tuple[object, ...] = getattr(annotation, "__metadata__", ())
    return metadata


def _serializer(annotation: object) -> Callable[[Any], Any]:
    """The field's ``PlainSerializer`` (each one here takes the value only), else
    ``_plain``."""
    for m in reversed(_metadata(annotation)):
        if isinstance(m, PlainSerializer):
            return cast(Callable[[Any], Any], m.func)
    return _plain


@dataclasses.dataclass(frozen=True)
class Causation(_Data):
    """The input that caused an outcome: its CloudEvent `id`, `source` and `type`."""

    __pydantic_config__: ClassVar[ConfigDict] = _CONFIG

    id: str | None = None
    """The input CloudEvent's id; for the manual API, its Idempotency-Key (or a fresh id)."""
    source: str | None = None
    """The input CloudEvent's source."""
    type: str | None = None
    """The input CloudEvent's type."""
    traceparent: Annotated[str | None, NotData] = None
    tracestate: Annotated[str | None, NotData] = None
    deduplicated: Annotated[bool, NotData] = True
    """False when no repeat can name the input again (a manual call without an
    ``Idempotency-Key`` gets a fresh id): then no idempotency record is kept for it."""

    def as_dict(self) -> CausationData:
        return self.as_data()


@dataclasses.dataclass(frozen=True)
class Outcome(_Data):
    """One decided task: the data of an outcome CloudEvent; the answer of `POST /retry`."""

    __pydantic_config__: ClassVar[ConfigDict] = _CONFIG
    LOGGED: ClassVar[tuple[str, ...]] = (
        "outcome", "failure_job_id", "failure_job_id_field", "server_group_id", "trigger",
        "dry_run", "rule", "status_code", "attempts",
    )

    outcome: OutcomeName
    """What became of the task; the event's type is `sdrs.failurejob.<outcome>`."""
    project_id: str
    """The project whose task center lists the task."""
    failure_job_id: str | None
    """The task's id, also the event's subject: the value of the configured id field
    (SDRS_FAILURE_JOB_ID_FIELD) of its authoritative record; where no record was found,
    the id the input gave (`failure_job_id_field` says which field that is). Null when
    the input named no usable id."""
    trigger: Trigger
    """What started the decision: an event, the timer's sweep, the manual HTTP API or the
    command line."""
    dry_run: bool
    """Decided without deleting (DRY_RUN, or the request's dry_run)."""
    causation: Causation
    """The input that caused this outcome."""
    rule: str | None = None
    """The policy rule that decided, or a reserved name (hold, forced, keep-latest,
    default, ...); null when no rule was reached."""
    reason: str = ""
    """Why, in words."""
    retain_until: Instant | None = None
    """When a retained task becomes deletable; null when never, or not retained."""
    status_code: int | None = None
    """The HTTP status of the DELETE; null when none was answered."""
    attempts: Count = 0
    """DELETE requests sent for the task, retries included."""
    job: Mapping[str, Any] | None = None
    """The authoritative record, as listed; null when none was found."""
    error: Error = None
    """Why the delete failed; null unless the outcome is delete_failed."""
    forced: bool = False
    """Decided with `force`: age, rules and keep-latest skipped, holds never."""
    server_group_id: str | None = None
    """The protection group whose listing holds the task; null at the top level, or when
    it was not found."""
    failure_job_id_field: str | None = None
    """Which record field `failure_job_id` is the value of: the configured
    SDRS_FAILURE_JOB_ID_FIELD (`resource_id` unless configured otherwise) when the record
    was found; else the field the input named the task by (`resource_id`, `job_id`, or
    the configured field for an input's `failure_job_id`). Null where unknown."""

    @property
    def id_key(self) -> str | None:
        """What names the task in the outcome's id: its failure_job_id, else (a record
        without a usable id) its job_id, so that two such records never share an id."""
        if self.failure_job_id:
            return self.failure_job_id
        job_id = self.job.get("job_id") if self.job is not None else None
        return f"job_id:{job_id}" if isinstance(job_id, str) and job_id else None

    @property
    def transient_failure(self) -> bool:
        """A failure that a redelivery of the input may cure."""
        # delete_failed after transient errors; retained only because a listing was cut
        # short (the deadline, a 5xx): listing again may decide it.
        return self.outcome in ("delete_failed", "retained") and bool(
            self.error and self.error.get("retryable"))


@dataclasses.dataclass(frozen=True)
class SweepSummary(_Data):
    """The result of one sweep: the data of `sdrs.failurejob.sweep_completed`; the answer
    of `POST /sweep`."""

    __pydantic_config__: ClassVar[ConfigDict] = _CONFIG
    LOGGED: ClassVar[tuple[str, ...]] = (
        "outcome", "trigger", "dry_run", "listed", "deleted", "partial", "partial_reason",
        "aborted", "aborted_reason", "skipped", "skipped_reason",
    )

    outcome: Literal["sweep_completed"] = dataclasses.field(default=SWEEP_COMPLETED,
                                                            kw_only=True)
    """Always `sweep_completed`."""
    project_id: str
    """The project swept."""
    trigger: Trigger
    """What started the sweep."""
    dry_run: bool
    """Swept without deleting."""
    causation: Causation
    """The input that started the sweep."""
    listed: Count = 0
    """Records listed, every scope together."""
    groups: Count = 0
    """Protection groups listed."""
    decided: Count = 0
    """Tasks decided (the sum of `outcomes`)."""
    deleted: Count = 0
    """Tasks deleted."""
    outcomes: Counts = dataclasses.field(default_factory=dict)
    """Tasks per outcome."""
    rules: Mapping[str, Count] = dataclasses.field(default_factory=dict)
    """Tasks per deciding rule."""
    duration_seconds: Duration = 0.0
    """How long the sweep took."""
    partial: bool = False
    """Not every task was decided (a listing that did not complete, the deadline, the
    sink): the next sweep takes up the rest."""
    partial_reason: str | None = None
    """Why the sweep is partial."""
    aborted: bool = False
    """A guard stopped the sweep: nothing was deleted."""
    aborted_reason: str | None = None
    """Which guard, and why."""
    error: Error = None
    """Why the sweep failed; null unless it did."""
    server_group_id: str | None = None
    """The one protection group swept; null for every scope."""
    skipped: bool = False
    """Another sweep of the project held the lease: this one listed and deleted nothing."""
    skipped_reason: str | None = None
    """Why the sweep was skipped."""
    task_events_omitted: Count = 0
    """A dry run: `would_delete` tasks counted here and in `outcomes` but not sent one by
    one (past SWEEP_MAX_TASK_EVENTS), so a backlog does not flood consumers."""

    @property
    def transient_failure(self) -> bool:
        return bool(self.error and self.error.get("retryable"))


def outcome_id(causation: Causation, task_id: str | None, event_type: str) -> str:
    """Deterministic: a redelivered input yields outcomes with the same ids."""
    key = "\x1f".join(
        (causation.source or "", causation.id or "", task_id or "", event_type)
    )
    return str(uuid.uuid5(_ID_NAMESPACE, key))
