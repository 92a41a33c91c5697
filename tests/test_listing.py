"""Listing a scope of any length (issue 19): no page bound, page by page as the pages
arrive, and the four ways a listing ends incomplete, against the stand-in on loopback."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from failjob_reaper.sdrs import (
    IncompleteListing,
    RetryPolicy,
    SdrsError,
    TaskCenterClient,
    TokenAuth,
)
from failjob_reaper.sdrs._client import _Seen
from standin import TaskCenterStandIn
from tests.conftest import EXPIRED, PROJECT, TOKEN, failed_task

QUICK = RetryPolicy(max_attempts=2, backoff_initial=0.0, backoff_max=0.0)


def client_for(server: TaskCenterStandIn) -> TaskCenterClient:
    return TaskCenterClient(server.url, PROJECT, auth=TokenAuth(TOKEN), retry=QUICK)


@pytest.fixture
def small_pages() -> Iterator[TaskCenterStandIn]:
    with TaskCenterStandIn(project_id=PROJECT, token=TOKEN, max_page=10) as server:
        yield server


def listing_calls(server: TaskCenterStandIn) -> list[str]:
    return [r.query.get("offset", "") for r in server.requests
            if r.path.endswith("failure-jobs")]


def test_pages_arrive_one_by_one_with_no_bound_on_their_number(
    small_pages: TaskCenterStandIn,
) -> None:
    records = [failed_task(EXPIRED) for _ in range(1005)]  # 101 pages of at most 10
    small_pages.add_jobs((r, None) for r in records)
    client = client_for(small_pages)
    pages = client.failure_job_pages()
    first = next(pages)
    assert len(first) == 10 and listing_calls(small_pages) == ["0"]  # nothing read ahead
    rest = [record for page in pages for record in page]
    assert sorted(r["job_id"] for r in [*first, *rest]) == sorted(r["job_id"] for r in records)
    assert len(listing_calls(small_pages)) == 102  # 101 pages and the empty one
    assert len(client.list_failure_jobs()) == 1005  # the list form: the same records


def test_each_page_brings_only_records_not_seen_before(small_pages: TaskCenterStandIn) -> None:
    shared = failed_task(EXPIRED)
    no_id = {k: v for k, v in failed_task(EXPIRED).items() if k != "job_id"}
    small_pages.add_jobs([(shared, None), (dict(shared), None), (no_id, None),
                          (dict(no_id), None), *((failed_task(EXPIRED), None) for _ in range(15))])
    small_pages.repeat_records = 2  # and the server lists every record twice in a row
    pages = list(client_for(small_pages).failure_job_pages())
    listed = [record for page in pages for record in page]
    assert all(pages)  # never an empty page
    assert len(listed) == 1 + 1 + 15  # by job_id, else by the whole content
    assert sum(1 for r in listed if r.get("job_id") == shared["job_id"]) == 1


def test_a_server_that_ignores_offset_ends_the_stream_incomplete_holding_nothing() -> None:
    with TaskCenterStandIn(project_id=PROJECT, token=TOKEN, max_page=5,
                           ignore_offset=True) as odd:
        odd.add_jobs((failed_task(EXPIRED), None) for _ in range(12))
        client = client_for(odd)
        got: list[list[dict[str, Any]]] = []
        with pytest.raises(IncompleteListing) as raised:
            for page in client.failure_job_pages():
                got.append(page)
        assert [len(page) for page in got] == [5]
        assert raised.value.records == [] and raised.value.pages == 2
        assert raised.value.retryable is False and "ignore offset" in raised.value.message
        assert raised.value.code == "SDRS.IncompleteListing" and raised.value.scopes == []
        with pytest.raises(IncompleteListing) as listed:
            client.list_failure_jobs()
        assert len(listed.value.records) == 5  # the list form hands over what it read


def test_a_deadline_already_past_sends_nothing(small_pages: TaskCenterStandIn) -> None:
    small_pages.add_jobs((failed_task(EXPIRED), None) for _ in range(3))
    with pytest.raises(IncompleteListing) as raised:
        list(client_for(small_pages).failure_job_pages(deadline=time.monotonic() - 1))
    assert raised.value.retryable is True and "deadline" in raised.value.message
    assert listing_calls(small_pages) == []


def test_a_deadline_reached_between_pages_ends_the_listing_incomplete(
    small_pages: TaskCenterStandIn,
) -> None:
    small_pages.add_jobs((failed_task(EXPIRED), None) for _ in range(30))
    pages = client_for(small_pages).failure_job_pages(deadline=time.monotonic() + 2)
    got = [next(pages)]
    small_pages.latency = 30.0  # the next page would end long after the deadline
    with pytest.raises(IncompleteListing) as raised:
        got.extend(pages)  # cut at the deadline: every request is bounded whole
    assert [len(page) for page in got] == [10]
    assert raised.value.retryable is True and raised.value.pages == 1


def test_a_page_over_the_byte_bound_ends_the_listing_incomplete(
    small_pages: TaskCenterStandIn,
) -> None:
    small_pages.add_jobs((failed_task(EXPIRED), None) for _ in range(25))
    client = TaskCenterClient(small_pages.url, PROJECT, auth=TokenAuth(TOKEN), retry=QUICK,
                              max_response_bytes=64 * 1024)  # the request layer's bound
    pages = client.failure_job_pages()
    assert len(next(pages)) == 10
    small_pages.page_bytes = 1024 * 1024  # from the second page on: 1 MB pages
    with pytest.raises(IncompleteListing) as raised:
        next(pages)
    assert raised.value.retryable is False and raised.value.pages == 1
    assert "larger than the byte bound" in raised.value.message


def test_other_errors_are_not_an_incomplete_listing(small_pages: TaskCenterStandIn) -> None:
    with pytest.raises(SdrsError) as raised:
        list(client_for(small_pages).failure_job_pages(server_group_id="no-such-group"))
    assert not isinstance(raised.value, IncompleteListing)
    assert raised.value.status_code == 404 and raised.value.code == "SDRS.1301"


def test_what_a_listing_keeps_per_record_is_a_small_digest() -> None:
    n = 50_000
    identities = [f"id:{i:032x}" for i in range(n)]
    tracemalloc.start()
    try:
        seen = _Seen()
        for identity in identities:
            assert seen.add(identity)
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept / n < 130  # bytes per record (about 90: docs)
    assert not seen.add(identities[7]) and len(seen) == n
    assert _Seen().add(identities[7])  # a fresh listing, a fresh key: seen again


def test_a_list_of_groups_that_stops_carries_the_groups_read() -> None:
    with TaskCenterStandIn(project_id=PROJECT, token=TOKEN, max_page=2,
                           ignore_offset=True) as odd:
        for i in range(5):
            odd.add_group(f"group-{i}")
        with pytest.raises(IncompleteListing) as raised:
            client_for(odd).list_server_groups()
        assert [g["id"] for g in raised.value.records] == ["group-0", "group-1"]


def test_the_stand_in_pages_are_what_the_client_joins(small_pages: TaskCenterStandIn) -> None:
    records = [failed_task(EXPIRED) for _ in range(23)]
    small_pages.add_jobs((r, None) for r in records)
    listed = client_for(small_pages).list_failure_jobs()
    assert json.dumps(sorted(listed, key=lambda r: r["job_id"]), sort_keys=True) == json.dumps(
        sorted(records, key=lambda r: r["job_id"]), sort_keys=True)


def test_a_listing_kept_in_part_tells_seen_records_from_new_ones_in_bytes_not_objects() -> None:
    # What a re-listing kept only in part (docs/safety.md, "Fresh before delete") uses
    # instead of an exact set: every record seen reads as seen again (so a server that
    # repeats a page is caught), and a new one is seldom taken for seen.
    from failjob_reaper.scopes import _Glimpsed

    glimpsed = _Glimpsed(20_000)
    firsts = [glimpsed.add(f"job-{n}") for n in range(20_000)]
    assert sum(firsts) > 19_990  # new, nearly all read as new
    assert not any(glimpsed.add(f"job-{n}") for n in range(20_000))  # seen: always seen
    taken_for_seen = sum(not glimpsed.add(f"new-{n}") for n in range(2_000))
    assert taken_for_seen < 10  # about 2 in 10,000 at its size
    assert len(glimpsed._bits) == 20_000 * 20 // 8
