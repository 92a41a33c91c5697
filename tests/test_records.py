"""The compact form of a listed record is the record: equal to the dict it came from,
read the same way by every reader, whatever the API put in it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failjob_reaper.records import FIELDS, Record, RecordTable

LISTED = {"job_status": "FAIL", "resource_id": "897f57b2-6e94-4179-b414-9532726c59f2",
          "resource_name": "Protected-Instance-5e2e", "resource_type": "protectedInstance",
          "failure_status": "createFail", "job_id": "ff808082686f229a0168707b9be9013e",
          "job_type": "createProtectedInstance", "begin_time": "2019-01-21T12:56:15.591Z",
          "error_code": "EVS.2024", "fail_reason": "volume is error!"}

values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                   st.sampled_from(["2019-01-21T12:56:15.591Z", "0001-01-01T00:00:00.000Z",
                                    "2019-13-21T12:56:15.591Z", "9999-12-31T23:59:59.999Z"]),
                   st.lists(st.integers(), max_size=2))


@settings(suppress_health_check=[HealthCheck.too_slow])  # a loaded machine draws slowly
@given(st.dictionaries(st.sampled_from([*FIELDS, "extra", "server_group_id"]), values))
def test_a_compact_record_equals_and_reads_as_the_dict_it_came_from(
    record: dict[str, Any]
) -> None:
    table = RecordTable([record])
    compact = table[0]
    assert isinstance(compact, Record) and len(table) == 1
    assert compact == record and dict(compact) == record
    assert json.dumps(dict(compact), sort_keys=True) == json.dumps(record, sort_keys=True)
    for name in [*FIELDS, "extra", "absent"]:
        assert compact.get(name) == record.get(name)
        assert (name in compact) == (name in record)


def test_repeated_values_are_shared_and_the_time_is_packed_exactly() -> None:
    other = json.loads(json.dumps({**LISTED, "job_id": "another"}))
    table = RecordTable([dict(LISTED), other])
    first, second = table
    assert first["error_code"] is second["error_code"]
    assert first["fail_reason"] is second["fail_reason"]
    assert first["begin_time"] == LISTED["begin_time"]
    assert table._millis[0] != -(2**63)  # packed, not kept beside


def test_a_table_keeps_one_record_per_identity_and_finds_it() -> None:
    table = RecordTable()
    assert table.add(LISTED) and not table.add(dict(LISTED))
    assert not table.add({**LISTED, "fail_reason": "another copy"})  # same job_id
    anonymous = {k: v for k, v in LISTED.items() if k != "job_id"}
    assert table.add(anonymous) and not table.add(dict(anonymous))
    assert len(table) == 2
    assert table.row_of(RecordTable.identity_of_record(LISTED)) == 0
    assert table.row_of(table.identity_of(1)) == 1 and table[1] == anonymous


def test_a_record_has_no_hash_like_the_dict_it_stands_for() -> None:
    with pytest.raises(TypeError):
        hash(RecordTable([LISTED])[0])


@given(st.from_regex(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z"))
def test_a_time_is_packed_only_when_it_gives_the_very_same_text_back(text: str) -> None:
    from failjob_reaper.records import _pack_time, _unpack_time

    packed = _pack_time(text)
    if packed is not None:
        assert _unpack_time(packed) == text
    assert RecordTable([{"begin_time": text}])[0]["begin_time"] == text


def test_a_listed_and_planned_task_costs_a_few_hundred_bytes() -> None:
    # What a backlog costs per task (docs/performance.md): the listing's table and the
    # plan over it, every id, resource and name unique (the dearest case), measured as
    # the growth from 4,000 to 12,000 tasks with tracemalloc. 169 kept and at the peak
    # when measured; the object-per-task forms before it cost 500 to 1,300.
    import gc
    import tracemalloc
    from datetime import UTC, datetime

    from failjob_reaper.plan import Everything, ScopeListing, make_plan
    from failjob_reaper.policy import parse_policy
    from standin.sample_data import bulk_rows

    now = datetime(2026, 12, 1, tzinfo=UTC)
    policy = parse_policy({"default_retention": "7d", "guards": {
        "max_deletions_per_sweep": 10**9, "max_deletion_fraction": 1.0}})

    def cost(n: int) -> tuple[int, int]:
        bodies = [body for body, *_ in bulk_rows(n, 0, now)[1]]
        gc.collect()
        tracemalloc.start()
        try:
            table = RecordTable()
            for body in bodies:
                table.add(json.loads(body))
            plan = make_plan([ScopeListing(None, table)], policy, now,
                             id_field="resource_id", target=Everything())
            kept, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(plan.deletes) == n
        return kept, peak

    (kept_small, peak_small), (kept_large, peak_large) = cost(4000), cost(12000)
    assert (kept_large - kept_small) / 8000 < 220
    assert (peak_large - peak_small) / 8000 < 280


@pytest.mark.parametrize("value", [
    "ff808082686f229a0168707b9be9013e", "FF808082686F229A0168707B9BE9013E",
    "897f57b2-6e94-4179-b414-9532726c59f2", "897F57B2-6E94-4179-B414-9532726C59F2",
    "ff808082686f229a0168707b9be9013g", "897f57b2-6e94-4179-b414-9532726c59f", "", 42, None,
])
def test_an_id_in_any_form_reads_back_as_it_was_listed(value: object) -> None:
    record = {**LISTED, "job_id": value, "resource_id": value}
    [row] = RecordTable([record])
    assert row["job_id"] == value and type(row["job_id"]) is type(value)
    assert row["resource_id"] == value and dict(row) == record


def test_a_hex_id_and_the_uuid_of_the_same_digits_are_two_records() -> None:
    hex_id = "897f57b26e944179b4149532726c59f2"
    dashed = "897f57b2-6e94-4179-b414-9532726c59f2"
    table = RecordTable([{**LISTED, "job_id": hex_id}, {**LISTED, "job_id": dashed}])
    assert [r["job_id"] for r in table] == [hex_id, dashed]
