"""The retention policy model (docs/policy.md).

Every model is frozen (a policy is loaded once and shared by every
invocation of a warm function) and forbids unknown keys (a misspelt key must
not silently fall back to a default that deletes more than intended).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
)

from ._durations import iso_duration, parse_duration

# Decision.rule values that are not rule names; a rule must not borrow one,
# or an outcome saying rule "hold" would be ambiguous.
RESERVED_RULE_NAMES = frozenset(
    {"hold", "forced", "begin-time-unparsable", "clock-skew", "keep-latest", "default"}
)


def _retention(value: object, info: ValidationInfo) -> timedelta | None:
    # In a file, a blank value is more likely a slip than a wish to keep
    # everything forever: files must say "forever". Python callers may pass None.
    if value is None and (info.context or {}).get("from_file"):
        raise ValueError("missing duration (use P7D, 7d, 12h, 30m, 30s or forever)")
    return parse_duration(value, allow_forever=True)


def _tolerance(value: object) -> timedelta:
    parsed = parse_duration(value, allow_forever=False)
    assert parsed is not None  # allow_forever=False never yields None
    return parsed


def _match_values(value: object) -> object:
    if value is None or isinstance(value, str):
        return None if value is None else (value,)
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(
                "an empty list matches nothing; leave the field out to match everything"
            )
        return tuple(value)
    raise ValueError("expected a string or a list of strings")


def _names(value: object) -> object:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(value)
    raise ValueError("expected a string or a list of strings")


def _none_is(default: Any) -> BeforeValidator:
    # A YAML key with nothing after it ("holds:") reads as null; treat it as
    # "nothing configured" rather than as an error.
    return BeforeValidator(lambda value: default if value is None else value)


# As JSON, durations are written the way a policy file spells them, so that
# a dumped policy loads back unchanged.
_AS_FILE = PlainSerializer(iso_duration, return_type=str, when_used="json")

Retention = Annotated[timedelta | None, BeforeValidator(_retention), _AS_FILE]
"""A retention period; ``None`` means forever."""

Tolerance = Annotated[timedelta, BeforeValidator(_tolerance), _AS_FILE]
MatchValues = Annotated[tuple[str, ...] | None, BeforeValidator(_match_values)]
Names = Annotated[tuple[str, ...], BeforeValidator(_names)]

# defer_build: a model's validator is built when it first validates (a policy file),
# not at import: a function on the default policy never builds them (cold start).
_FROZEN = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class Match(BaseModel):
    """Which records a rule applies to.

    All given fields must match (AND); a list matches any of its elements
    (OR); a field left out matches anything, so an empty match matches every
    record. ``error_code``, ``resource_name`` and ``job_type`` are
    case-sensitive globs (``EVS.*``); the other fields compare exactly, except
    ``resource_type``, which treats the filter spellings of the API
    (``protected_instances``) and the spellings seen in listings
    (``protectedInstance``) as equal: case, ``_`` and a trailing ``s`` are
    ignored on both sides.
    """

    model_config = _FROZEN

    resource_type: MatchValues = None
    failure_status: MatchValues = None
    error_code: MatchValues = None
    resource_name: MatchValues = None
    job_type: MatchValues = None
    resource_id: MatchValues = None
    job_id: MatchValues = None
    server_group_id: MatchValues = None

    def given(self) -> dict[str, tuple[str, ...]]:
        """The fields this match constrains, in declaration order."""
        return {
            name: values
            for name in type(self).model_fields
            if (values := getattr(self, name)) is not None
        }


class Rule(BaseModel):
    model_config = _FROZEN

    name: str = Field(min_length=1)
    match: Annotated[Match, _none_is({})] = Match.model_construct()  # no build at import
    retention: Retention

    @field_validator("name")
    @classmethod
    def _name_usable(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("rule name must not be blank")
        if name in RESERVED_RULE_NAMES:
            reserved = ", ".join(sorted(RESERVED_RULE_NAMES))
            raise ValueError(f"rule name {name!r} is reserved ({reserved}); pick another")
        return name


class Holds(BaseModel):
    """Records that are never deleted, not even by a forced manual call."""

    model_config = _FROZEN

    resource_ids: Names = ()
    resource_names: Names = ()  # globs, case-sensitive
    job_ids: Names = ()


class Guards(BaseModel):
    """Sweep-level brakes, applied by the sweep (not by ``decide``)."""

    model_config = _FROZEN

    max_deletions_per_sweep: int = Field(default=500, ge=0, strict=True)
    max_deletion_fraction: float = Field(default=1.0, gt=0, le=1, strict=True, allow_inf_nan=False)


class Policy(BaseModel):
    model_config = _FROZEN

    default_retention: Retention = timedelta(days=7)
    keep_latest_per_resource: int = Field(default=0, ge=0, strict=True)
    clock_skew_tolerance: Tolerance = timedelta(minutes=5)
    dry_run: bool = Field(default=False, strict=True)
    notice: Tolerance = timedelta(0)
    """> 0: tell the operator (SMN) which tasks will be deleted within this window."""
    rules: Annotated[tuple[Rule, ...], _none_is(())] = ()
    holds: Annotated[Holds, _none_is({})] = Holds.model_construct()
    guards: Annotated[Guards, _none_is({})] = Guards.model_construct()

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
        first: dict[str, int] = {}
        for index, rule in enumerate(rules):
            if rule.name in first:
                raise ValueError(
                    f"duplicate rule name {rule.name!r} "
                    f"(rules[{first[rule.name]}] and rules[{index}])"
                )
            first[rule.name] = index
        return rules
