"""One outcome model (issue 18): the event data, the log fields, a replayed answer and the
manual API's schema all come from the dataclasses of ``failjob_reaper.outcomes``."""

from __future__ import annotations

import dataclasses
import functools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failjob_reaper.exactly_once import outcome_from_data, summary_from_data
from failjob_reaper.http_api import _openapi
from failjob_reaper.logs import causation_fields, outcome_fields, summary_fields
from failjob_reaper.outcomes import OUTCOMES, Causation, Outcome, SweepSummary
from failjob_reaper.outcomes._data import adapter, schema

# -- generated outcomes ---------------------------------------------------------------------

_text = st.text(max_size=12)
_maybe_text = st.none() | _text
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | _text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_record = st.dictionaries(_text, _json_value, max_size=4)
_zones: list[timezone | None] = [None, UTC, timezone(timedelta(0)), timezone(timedelta(hours=8)),
                                 timezone(timedelta(hours=-3, minutes=-30))]
_when = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.sampled_from(_zones))
_error = st.fixed_dictionaries(
    {"code": st.none() | _text | st.integers(0, 999), "message": _text,
     "retryable": st.booleans()},
    optional={"status": st.integers(100, 599)},  # an error may carry more than the data
)
_causation = st.builds(Causation, id=_maybe_text, source=_maybe_text, type=_maybe_text,
                       traceparent=_maybe_text, tracestate=_maybe_text,
                       deduplicated=st.booleans())
_trigger = st.sampled_from(["event", "timer", "http", "cli"])
_count = st.integers(0, 10**6)

outcomes = st.builds(
    Outcome,
    outcome=st.sampled_from(OUTCOMES), project_id=_text, failure_job_id=_maybe_text,
    trigger=_trigger, dry_run=st.booleans(), causation=_causation, rule=_maybe_text,
    reason=_text, retain_until=st.none() | _when, status_code=st.none() | st.integers(100, 599),
    attempts=_count, job=st.none() | _record, error=st.none() | _error, forced=st.booleans(),
    server_group_id=_maybe_text,
    failure_job_id_field=st.sampled_from([None, "resource_id", "job_id", "custom_id"]),
)
summaries = st.builds(
    SweepSummary,
    project_id=_text, trigger=_trigger, dry_run=st.booleans(), causation=_causation,
    listed=_count, groups=_count, decided=_count, deleted=_count,
    outcomes=st.dictionaries(st.sampled_from(OUTCOMES), _count),
    rules=st.dictionaries(_text, _count, max_size=3),
    duration_seconds=st.floats(0, 10**5, allow_nan=False),
    partial=st.booleans(), partial_reason=_maybe_text, aborted=st.booleans(),
    aborted_reason=_maybe_text, error=st.none() | _error, server_group_id=_maybe_text,
    skipped=st.booleans(), skipped_reason=_maybe_text,
)
models = outcomes | summaries


def _stored(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` as the state store gives it back (idempotency records are JSON)."""
    loaded: dict[str, Any] = json.loads(json.dumps(data))
    return loaded


# -- the data and a replayed answer ------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(models)
def test_the_data_reads_back_to_the_same_data(model: Outcome | SweepSummary) -> None:
    data = model.as_data()
    again = type(model).from_data(_stored(data))
    assert again.as_data() == data
    assert json.dumps(again.as_data()) == json.dumps(data)  # same keys, same order, same kinds


@settings(max_examples=300, deadline=None)
@given(models)
def test_the_data_is_pydantics_serialization_of_the_model(
    model: Outcome | SweepSummary,
) -> None:
    # as_data() is built without pydantic (cold start); it must be what the schema describes.
    assert model.as_data() == adapter(type(model)).dump_python(model, mode="json")


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    """The OpenAPI document's schema of component ``name``, as a JSON Schema validator."""
    document = json.loads(_openapi.document_bytes())
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", **document})


@settings(max_examples=200, deadline=None)
@given(models)
def test_the_data_is_valid_against_the_openapi_document(model: Outcome | SweepSummary) -> None:
    _validator(type(model).__name__).validate(_stored(model.as_data()))


def test_the_openapi_document_refuses_what_is_not_the_data() -> None:
    data = _stored(_an_outcome().as_data())
    _validator("Outcome").validate(data)
    for key, value in (("outcome", "exploded"), ("attempts", -1), ("error", {"code": 1})):
        with pytest.raises(jsonschema.ValidationError):
            _validator("Outcome").validate({**data, key: value})
    without = dict(data)
    del without["failure_job_id_field"]
    with pytest.raises(jsonschema.ValidationError):  # an answer always has every field
        _validator("Outcome").validate(without)


def test_the_openapi_answers_are_the_models_schema() -> None:
    document = json.loads(_openapi.document_bytes())
    components = document["components"]["schemas"]
    paths = document["paths"]
    for path, model in (("/retry", Outcome), ("/sweep", SweepSummary)):
        answer = paths[path]["post"]["responses"]["200"]["content"]["application/json"]
        assert answer["schema"] == {"$ref": f"#/components/schemas/{model.__name__}"}
        own = schema(model)
        definitions = own.pop("$defs", {})
        own_refs = json.dumps(own).replace("#/$defs/", "#/components/schemas/")
        assert json.loads(own_refs) == components[model.__name__]
        for name, definition in definitions.items():
            refs = json.dumps(definition).replace("#/$defs/", "#/components/schemas/")
            assert json.loads(refs) == components[name]
    outcome = components["Outcome"]
    assert tuple(outcome["properties"]) == tuple(f.name for f in dataclasses.fields(Outcome))
    assert set(outcome["required"]) == set(outcome["properties"])  # an answer has every field
    assert set(components["Causation"]["properties"]) == {"id", "source", "type"}


def test_every_field_of_the_data_is_documented() -> None:
    components = json.loads(_openapi.document_bytes())["components"]["schemas"]
    for name in ("Outcome", "SweepSummary", "Causation"):
        for field, described in components[name]["properties"].items():
            assert described.get("description"), f"{name}.{field} has no description"
    described = components["Outcome"]["properties"]["failure_job_id_field"]["description"]
    assert "SDRS_FAILURE_JOB_ID_FIELD" in described


def _an_outcome(**fields: Any) -> Outcome:
    base: dict[str, Any] = {
        "outcome": "deleted", "project_id": "p", "failure_job_id": "r-1", "trigger": "event",
        "dry_run": False, "causation": Causation(id="e-1", source="/s", type="t"),
        "retain_until": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "status_code": 204,
        "attempts": 1, "job": {"resource_id": "r-1", "job_id": "j-1"},
        "error": {"code": "SDRS.1", "message": "m", "retryable": False},
        "failure_job_id_field": "resource_id",
    }
    return Outcome(**{**base, **fields})


def _corrupt(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**data, key: value}


CORRUPT: list[tuple[str, Any]] = [
    ("outcome", "exploded"),  # an outcome this code never names
    ("outcome", None),
    ("trigger", "cron"),
    ("attempts", "1"),  # a string for a number
    ("attempts", -1),
    ("attempts", 1.5),
    ("dry_run", 0),  # a number for a boolean
    ("status_code", "204"),
    ("retain_until", "yesterday"),
    ("retain_until", 1767322800),
    ("failure_job_id", 7),
    ("job", ["not", "a", "record"]),
    ("error", {"code": "SDRS.1", "message": "m"}),  # not as as_data() writes an error
    ("error", {"code": 1, "message": "m", "retryable": False}),
    ("error", {"code": "SDRS.1", "message": "m", "retryable": 1}),
    ("causation", {"id": "e-1", "source": "/s", "type": "t", "traceparent": "00-x"}),
    ("causation", "e-1"),
    ("unknown_field", 1),
]


@pytest.mark.parametrize(("key", "value"), CORRUPT)
def test_a_corrupt_replayed_outcome_is_refused(key: str, value: Any) -> None:
    data = _stored(_an_outcome().as_data())
    assert Outcome.from_data(data).as_data() == data
    with pytest.raises(ValueError, match="Outcome"):
        Outcome.from_data(_corrupt(data, key, value))
    with pytest.raises(ValueError, match="Outcome"):
        outcome_from_data(_corrupt(data, key, value))  # the alias the replay path calls


CORRUPT_SUMMARY: list[tuple[str, Any]] = [
    ("outcome", "deleted"),  # an Outcome's data is not a summary
    ("outcomes", {"deleted": 1}),  # counts must name every outcome
    ("outcomes", {**dict.fromkeys(OUTCOMES, 0), "exploded": 1}),
    ("duration_seconds", 0.12345),  # as_data() keeps milliseconds
    ("duration_seconds", -1.0),
    ("listed", True),
    ("rules", {"default": "3"}),
]


@pytest.mark.parametrize(("key", "value"), CORRUPT_SUMMARY)
def test_a_corrupt_replayed_summary_is_refused(key: str, value: Any) -> None:
    summary = SweepSummary(project_id="p", trigger="timer", dry_run=False,
                           causation=Causation(id="s-1", source="/ping"),
                           outcomes={"deleted": 2}, rules={"default": 2}, duration_seconds=1.5)
    data = _stored(summary.as_data())
    assert summary_from_data(data).as_data() == data
    with pytest.raises(ValueError, match="SweepSummary"):
        summary_from_data(_corrupt(data, key, value))


@pytest.mark.parametrize("data", [[], "deleted", None, {}])
def test_what_is_no_record_at_all_is_refused(data: Any) -> None:
    with pytest.raises(ValueError, match="Outcome"):
        Outcome.from_data(data)


def test_a_record_written_before_a_field_existed_reads_with_its_default() -> None:
    data = _stored(_an_outcome(failure_job_id_field=None).as_data())
    del data["failure_job_id_field"]
    assert Outcome.from_data(data).failure_job_id_field is None


# -- the log fields ----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(outcomes)
def test_the_log_fields_of_an_outcome_are_its_data_fields(outcome: Outcome) -> None:
    fields, data = outcome_fields(outcome), outcome.as_data()
    assert set(Outcome.LOGGED) <= set(data)
    assert {name: fields[name] for name in Outcome.LOGGED} == {
        name: data[name] for name in Outcome.LOGGED}
    assert fields == {**{name: data[name] for name in Outcome.LOGGED},
                      **causation_fields(outcome.causation)}


@settings(max_examples=100, deadline=None)
@given(summaries)
def test_the_log_fields_of_a_summary_are_its_data_fields(summary: SweepSummary) -> None:
    fields, data = summary_fields(summary), summary.as_data()
    assert set(SweepSummary.LOGGED) <= set(data)
    assert fields == {**{name: data[name] for name in SweepSummary.LOGGED},
                      **causation_fields(summary.causation)}
    assert fields["outcome"] == "sweep_completed"


# -- what the code around it relies on -----------------------------------------------------


def test_the_constructors_and_replace_keep_their_keywords() -> None:
    outcome = _an_outcome()
    changed = dataclasses.replace(outcome, outcome="already_deleted", reason="r")
    assert (changed.outcome, changed.reason, changed.job) == ("already_deleted", "r", outcome.job)
    assert {f.name for f in dataclasses.fields(Outcome)} == {
        "outcome", "project_id", "failure_job_id", "trigger", "dry_run", "causation", "rule",
        "reason", "retain_until", "status_code", "attempts", "job", "error", "forced",
        "server_group_id", "failure_job_id_field"}
    summary = SweepSummary(project_id="p", trigger="http", dry_run=True,
                           causation=Causation(), skipped=True, skipped_reason="busy")
    assert dataclasses.replace(summary, listed=3).as_data()["outcome"] == "sweep_completed"


def test_the_trace_context_is_not_data() -> None:
    causation = Causation(id="e", source="/s", type="t", traceparent="00-a-b-01",
                          tracestate="k=v", deduplicated=False)
    assert causation.as_data() == {"id": "e", "source": "/s", "type": "t"}
    assert _an_outcome(causation=causation).as_data()["causation"] == causation.as_data()


def test_times_are_written_in_utc_with_z() -> None:
    data = _an_outcome().as_data()
    assert data["retain_until"] == "2026-01-02T03:04:05Z"
