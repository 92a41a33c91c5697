"""The task-center stand-in and the outcome sink, driven over loopback with httpx."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from failjob_reaper.sdrs._signing import AkSkAuth, TokenAuth
from standin import (
    DEFAULT_PROJECT_ID,
    Fault,
    OutcomeSink,
    RecordedRequest,
    TaskCenterStandIn,
    bulk_world,
    parse_begin_time,
    sample_world,
)
from standin._http import RequestLog

PID = DEFAULT_PROJECT_ID
JOBS = f"/v1/{PID}/task-center/failure-jobs"
GROUPS = f"/v1/{PID}/server-groups"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def standin() -> Iterator[TaskCenterStandIn]:
    with TaskCenterStandIn() as server:
        yield server


@pytest.fixture
def client(standin: TaskCenterStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=standin.url, timeout=5) as c:
        yield c


def _one_group(standin: TaskCenterStandIn, n: int) -> str:
    groups, jobs = bulk_world(n, 1, NOW, top_level_share=0)
    standin.load(groups, jobs)
    return groups[0].id


def _error_code(response: httpx.Response) -> str:
    body = response.json()
    return str(body["error"]["code"] if "error" in body else body["error_code"])


# -- listing -------------------------------------------------------------------------


def test_paging_1500_jobs_in_one_group(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    gid = _one_group(standin, 1500)
    seen: list[str] = []
    for offset, size in [(0, 1000), (1000, 500), (1500, 0)]:
        r = client.get(JOBS, params={"server_group_id": gid, "limit": 1000, "offset": offset})
        assert r.status_code == 200
        body = r.json()
        assert body["count"] == size == len(body["failure_jobs"])
        seen += [job["resource_id"] for job in body["failure_jobs"]]
    assert len(set(seen)) == 1500
    # Default limit is 1000, newest first.
    page = client.get(JOBS, params={"server_group_id": gid}).json()["failure_jobs"]
    assert len(page) == 1000
    times = [parse_begin_time(job["begin_time"]) for job in page]
    assert times == sorted(times, reverse=True)  # type: ignore[type-var]
    # The top level does not show group-level records.
    assert client.get(JOBS).json() == {"count": 0, "failure_jobs": []}


def test_count_modes(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    gid = _one_group(standin, 1500)
    query = {"server_group_id": gid, "limit": "1000", "offset": "1000"}
    standin.count_mode = "total"
    assert client.get(JOBS, params=query).json()["count"] == 1500
    standin.count_mode = "wrong"
    for _ in range(5):
        assert client.get(JOBS, params=query).json()["count"] not in (500, 1500)
    with pytest.raises(ValueError):
        standin.count_mode = "nope"  # type: ignore[assignment]


def test_limits(client: httpx.Client) -> None:
    for bad in ({"limit": 1001}, {"limit": -1}, {"limit": "ten"}, {"offset": -5}):
        r = client.get(JOBS, params=bad)
        assert r.status_code == 400, bad
        assert _error_code(r) == "SDRS.0400"
    assert client.get(JOBS, params={"limit": 0}).status_code == 200


def test_max_page_clamps() -> None:
    with TaskCenterStandIn(max_page=200) as standin, httpx.Client(base_url=standin.url) as c:
        gid = _one_group(standin, 300)
        body = c.get(JOBS, params={"server_group_id": gid, "limit": 1000}).json()
        assert len(body["failure_jobs"]) == 200


def test_sample_world_listing_and_filters(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    standin.load(*sample_world(NOW))
    top = client.get(JOBS).json()["failure_jobs"]
    assert {job["resource_type"] for job in top} == {"server_groups"}
    web = standin.group_ids()[0]
    listed = client.get(JOBS, params={"server_group_id": web}).json()["failure_jobs"]
    assert len(listed) == len(standin.records(web)) == 6
    # "protected_instances" also matches the "protectedInstance" spelling.
    typed = client.get(
        JOBS, params={"server_group_id": web, "resource_type": "protected_instances"}
    ).json()["failure_jobs"]
    assert {job["resource_type"] for job in typed} == {"protected_instances", "protectedInstance"}
    started = client.get(
        JOBS, params={"server_group_id": web, "failure_status": "startFail"}
    ).json()["failure_jobs"]
    assert [job["resource_name"] for job in started] == ["web-03", "web-03"]
    r = client.get(JOBS, params={"server_group_id": "no-such-group"})
    assert r.status_code == 404 and _error_code(r) == "SDRS.1301"


def test_groups_listing(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    groups, _ = bulk_world(0, 5, NOW)
    standin.load(groups, [])
    body = client.get(GROUPS, params={"limit": 2, "offset": 3}).json()
    assert body["count"] == 5
    assert [g["id"] for g in body["server_groups"]] == [g.id for g in groups[3:5]]
    assert body["server_groups"][0]["status"] == "available"
    assert client.get(GROUPS, params={"limit": "x"}).status_code == 400


# -- delete --------------------------------------------------------------------------


def test_delete_then_404(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    standin.load(*sample_world(NOW))
    web = standin.group_ids()[0]
    target = standin.records(web)[0]["resource_id"]
    before = standin.job_count()
    first = client.delete(f"{JOBS}/{target}")
    assert first.status_code == 204 and first.content == b""
    again = client.delete(f"{JOBS}/{target}")
    assert again.status_code == 404
    assert again.json() == {"error": {"code": "SDRS.1302", "message": "failure job not found"}}
    assert not standin.listed(target)
    assert standin.job_count() < before
    listed = client.get(JOBS, params={"server_group_id": web}).json()["failure_jobs"]
    assert target not in {job["resource_id"] for job in listed}
    assert standin.deletes() == [target, target]


def test_delete_removes_every_record_with_the_id(
    standin: TaskCenterStandIn, client: httpx.Client
) -> None:
    standin.add_group("g1")
    standin.add_group("g2")
    record = {"resource_id": "shared", "job_id": "j1", "begin_time": "2024-01-01T00:00:00.000Z"}
    standin.add_job(record, "g1")
    standin.add_job({**record, "job_id": "j2"}, "g2")
    standin.add_job({**record, "job_id": "j3"})
    standin.add_job({"resource_id": "other", "begin_time": "x"}, "g1")
    assert standin.job_count() == 4
    assert client.delete(f"{JOBS}/shared").status_code == 204
    assert standin.job_count() == 1 and standin.listed("other")


def test_id_field_job_id() -> None:
    with TaskCenterStandIn(id_field="job_id") as standin, httpx.Client(base_url=standin.url) as c:
        standin.add_job({"resource_id": "r1", "job_id": "ff80", "begin_time": ""})
        assert c.delete(f"{JOBS}/r1").status_code == 404
        assert c.delete(f"{JOBS}/ff80").status_code == 204


def test_remove_job_is_someone_else(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    standin.add_job({"resource_id": "r1"})
    standin.remove_job("r1")
    assert not standin.listed("r1")
    assert client.delete(f"{JOBS}/r1").status_code == 404


def test_concurrent_deletes_of_one_id_succeed_once(
    standin: TaskCenterStandIn,
) -> None:
    standin.add_job({"resource_id": "r1"})
    barrier = threading.Barrier(8)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=standin.url) as c:
            barrier.wait()
            status = c.delete(f"{JOBS}/r1").status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [204] + [404] * 7


def test_batch_paths_answer_418(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    standin.add_job({"resource_id": "batch"})
    assert client.delete(f"{JOBS}/batch").status_code == 418
    assert client.delete(f"/v1/{PID}/task-center/g1/failure-jobs/batch").status_code == 418
    assert [r.path for r in standin.batch_calls()] == [
        f"{JOBS}/batch",
        f"/v1/{PID}/task-center/g1/failure-jobs/batch",
    ]
    assert standin.deletes() == [] and standin.listed("batch")


def test_wrong_project_unknown_path_and_method(client: httpx.Client) -> None:
    r = client.get("/v1/someoneelse/task-center/failure-jobs")
    assert r.status_code == 403 and _error_code(r) == "SDRS.0403"
    r = client.get(f"/v2/{PID}/nothing")
    assert r.status_code == 404 and _error_code(r) == "APIGW.0101"
    assert client.post(JOBS).status_code == 405


# -- auth ----------------------------------------------------------------------------


def test_token_auth() -> None:
    with TaskCenterStandIn(token="good-token") as standin:
        with httpx.Client(base_url=standin.url) as c:
            r = c.get(JOBS)
            assert r.status_code == 401 and _error_code(r) == "APIGW.0301"
            assert c.get(JOBS, headers={"X-Auth-Token": "bad"}).status_code == 401
        with httpx.Client(base_url=standin.url, auth=TokenAuth("good-token")) as c:
            assert c.get(JOBS).status_code == 200


def test_aksk_auth() -> None:
    creds = {"AK1": "SK1"}
    with TaskCenterStandIn(credentials=creds) as standin:
        standin.add_job({"resource_id": "r 1"})
        auth = AkSkAuth("AK1", "SK1", security_token="sts", project_id=PID)
        with httpx.Client(base_url=standin.url, auth=auth) as c:
            assert c.get(JOBS, params={"limit": 10, "resource_name": "a b+c"}).status_code == 200
            assert c.delete(f"{JOBS}/r%201").status_code == 204
        with httpx.Client(base_url=standin.url, auth=AkSkAuth("AK1", "wrong")) as c:
            r = c.get(JOBS)
            assert r.status_code == 401 and "signature mismatch" in r.json()["error_msg"]
        stale = AkSkAuth("AK1", "SK1", clock=lambda: datetime.now(UTC) - timedelta(minutes=20))
        with httpx.Client(base_url=standin.url, auth=stale) as c:
            assert c.get(JOBS).status_code == 401
        with httpx.Client(base_url=standin.url, auth=TokenAuth("any")) as c:
            assert c.get(JOBS).status_code == 401


def test_token_or_aksk_when_both_configured() -> None:
    with TaskCenterStandIn(token="t", credentials={"AK": "SK"}) as standin:
        for auth in (TokenAuth("t"), AkSkAuth("AK", "SK")):
            with httpx.Client(base_url=standin.url, auth=auth) as c:
                assert c.get(JOBS).status_code == 200
        with httpx.Client(base_url=standin.url) as c:
            assert c.get(JOBS).status_code == 401


# -- faults --------------------------------------------------------------------------


def test_fault_sequence_then_normal(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    standin.add_job({"resource_id": "r1"})
    standin.inject(
        "DELETE",
        r"/failure-jobs/[^/]+$",
        Fault(503, headers={"Retry-After": "2"}),
        Fault(429),
        Fault(500, body=b"oops"),
    )
    assert client.get(JOBS).status_code == 200  # other methods are untouched
    first = client.delete(f"{JOBS}/r1")
    assert first.status_code == 503 and first.headers["retry-after"] == "2"
    assert _error_code(first).startswith("SDRS.")
    throttled = client.delete(f"{JOBS}/r1")
    assert throttled.status_code == 429 and _error_code(throttled) == "APIG.0308"
    assert client.delete(f"{JOBS}/r1").content == b"oops"
    assert client.delete(f"{JOBS}/r1").status_code == 204
    assert standin.deletes() == ["r1"] * 4
    assert [r.status for r in standin.requests if r.method == "DELETE"] == [503, 429, 500, 204]


def test_delay_beyond_client_timeout(standin: TaskCenterStandIn) -> None:
    standin.inject("GET", "failure-jobs", Fault(delay=5))
    with httpx.Client(base_url=standin.url, timeout=0.2) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.get(JOBS)
        assert c.get(JOBS).status_code == 200  # the queue is empty again
    assert standin.requests[0].status == 0  # still hanging when the client gave up


def test_passthrough_after_delay(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    standin.inject("*", "failure-jobs", Fault(delay=0.05, passthrough=True))
    assert client.get(JOBS).status_code == 200
    record = standin.requests[0]
    assert record.finished is not None and record.finished - record.started >= 0.05


def test_close_faults(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    half_sent = Fault(200, body=b"x" * 100, close=True)
    standin.inject("GET", "failure-jobs", Fault(close=True), half_sent)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(JOBS)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.get(JOBS)
    assert client.get(JOBS).status_code == 200


def test_latency(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    standin.latency = 0.05
    client.get(JOBS)
    standin.latency = 0
    client.get(JOBS)
    slow, fast = standin.requests
    assert slow.finished is not None and slow.finished - slow.started >= 0.05
    assert fast.finished is not None
    with pytest.raises(ValueError):
        standin.latency = -1


# -- observation ---------------------------------------------------------------------


def test_request_log(standin: TaskCenterStandIn, client: httpx.Client) -> None:
    client.get(JOBS, params={"limit": 5}, headers={"X-Custom": "v"})
    for i in range(30):
        client.delete(f"{JOBS}/x{i}")
    log = standin.requests
    assert isinstance(log[0], RecordedRequest)
    assert log[0].query == {"limit": "5"} and log[0].headers["x-custom"] == "v"
    assert log[0].path == JOBS and log[0].status == 200
    # (max_requests_per_second is tested on given instants below: 31 requests within one
    # second of wall clock is not a promise a shared machine keeps.)
    assert standin.request_counts() == ({"GET": 1, "DELETE": 30},
                                        {"GET 200": 1, "DELETE 404": 30})
    # Keep-alive: one client, one connection.
    assert len({r.client_port for r in log}) == 1
    standin.reset_log()
    assert standin.requests == [] and standin.deletes() == []
    assert standin.request_counts() == ({}, {})


def test_sliding_window() -> None:
    log = RequestLog()
    for started in (0.0, 0.2, 0.4, 0.9, 1.0, 1.05, 3.0):
        log.add(RecordedRequest("GET", "/", {}, {}, started))
    assert log.max_per_second() == 5
    assert log.max_per_second("DELETE") == 0


# -- sample data ---------------------------------------------------------------------


def test_sample_world_shape() -> None:
    groups, jobs = sample_world(NOW)
    assert len(groups) == 3
    fields = {
        "job_status", "resource_id", "resource_name", "resource_type", "failure_status",
        "job_id", "job_type", "begin_time", "error_code", "fail_reason",
    }  # fmt: skip
    assert all(set(record) == fields for record, _ in jobs)
    assert any(g is None for _, g in jobs) and any(g is not None for _, g in jobs)
    kinds = {record["resource_type"] for record, _ in jobs}
    assert {"protectedInstance", "disaster_recovery_drills", "server_groups"} <= kinds
    assert len({record["failure_status"] for record, _ in jobs}) >= 5
    assert any(record["error_code"] == "EVS.2024" for record, _ in jobs)
    by_resource: dict[str, int] = {}
    for record, _ in jobs:
        by_resource[record["resource_id"]] = by_resource.get(record["resource_id"], 0) + 1
    assert 3 in by_resource.values()
    assert any(record["resource_name"] == "prod-db-01" for record, _ in jobs)
    times = [parse_begin_time(record["begin_time"]) for record, _ in jobs]
    assert times.count(None) == 1
    ages = [NOW - t for t in times if t is not None]
    assert any(a > timedelta(days=7) for a in ages) and any(a < timedelta(days=7) for a in ages)
    assert all(re.fullmatch(r"[0-9a-f]{32}", record["job_id"]) for record, _ in jobs)
    stamp = next(r["begin_time"] for r, _ in jobs if parse_begin_time(r["begin_time"]))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    assert sample_world(NOW) == sample_world(NOW)


def test_bulk_world() -> None:
    groups, jobs = bulk_world(2000, 4, NOW, seed=7)
    assert len(groups) == 4 and len(jobs) == 2000
    assert len({record["resource_id"] for record, _ in jobs}) == 2000
    assert all(re.fullmatch(r"[0-9a-f]{32}", record["job_id"]) for record, _ in jobs)
    assert all(NOW - parse_begin_time(r["begin_time"]) > timedelta(days=7) for r, _ in jobs)  # type: ignore[operator]
    assert bulk_world(2000, 4, NOW, seed=7) == (groups, jobs)
    _, fresh = bulk_world(50, 0, NOW, expired=False)
    assert all(g is None for _, g in fresh)
    assert all(NOW - parse_begin_time(r["begin_time"]) < timedelta(days=7) for r, _ in fresh)  # type: ignore[operator]


def test_main_serves_the_sample_world() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "standin", "--port", "0", "--sample", "--token", "T"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url, project = proc.stdout.readline().split()
        assert project == PID
        r = httpx.get(f"{url}{GROUPS}", headers={"X-Auth-Token": "T"})
        assert r.json()["count"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


# -- sink ----------------------------------------------------------------------------


def _event(n: int, event_type: str = "sdrs.failurejob.deleted") -> CloudEvent:
    attributes = {"type": event_type, "source": "/failjob-reaper", "id": f"id-{n}", "subject": "r1"}
    return CloudEvent(attributes, {"outcome": "deleted", "n": n})


@pytest.fixture
def sink() -> Iterator[OutcomeSink]:
    with OutcomeSink() as s:
        yield s


def _post(sink: OutcomeSink, event: CloudEvent, structured: bool = False) -> httpx.Response:
    headers, body = to_structured(event) if structured else to_binary(event)
    return httpx.post(sink.url, headers=headers, content=body, timeout=5)


def test_sink_receives_binary_and_structured(sink: OutcomeSink) -> None:
    assert _post(sink, _event(1)).status_code == 202
    assert _post(sink, _event(2, "sdrs.failurejob.retained"), structured=True).status_code == 202
    events = sink.wait_for(2, timeout=5)
    assert [e["id"] for e in events] == sink.received_ids == ["id-1", "id-2"]
    assert events[0].data == {"outcome": "deleted", "n": 1}
    assert [e["id"] for e in sink.of_type("sdrs.failurejob.retained")] == ["id-2"]


def test_sink_rejects_non_cloudevents(sink: OutcomeSink) -> None:
    assert httpx.post(sink.url, json={"hello": 1}).status_code == 400
    assert sink.events == []


def test_sink_wait_for_blocks_until_delivery(sink: OutcomeSink) -> None:
    ready = threading.Event()

    def deliver() -> None:
        ready.wait(5)
        _post(sink, _event(1))

    thread = threading.Thread(target=deliver)
    thread.start()
    ready.set()
    assert [e["id"] for e in sink.wait_for(1, timeout=5)] == ["id-1"]
    thread.join()


def test_sink_wait_for_timeout_says_what_it_has(sink: OutcomeSink) -> None:
    _post(sink, _event(1))
    with pytest.raises(AssertionError, match=r"expected 2 events.*sdrs.failurejob.deleted"):
        sink.wait_for(2, timeout=0.05)


def test_sink_faults(sink: OutcomeSink) -> None:
    sink.inject(Fault(503), Fault(close=True), Fault(delay=5))
    assert _post(sink, _event(1)).status_code == 503
    with pytest.raises(httpx.RemoteProtocolError):
        _post(sink, _event(2))
    headers, body = to_binary(_event(3))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(sink.url, headers=headers, content=body, timeout=0.2)
    assert _post(sink, _event(4)).status_code == 202
    assert sink.received_ids == ["id-4"]
    assert len(sink.requests) == 4


# -- backlogs and misbehaving servers (issue 19) ---------------------------------------


def test_sorted_rows_page_insert_and_remove_as_a_sorted_list_would() -> None:
    import random

    from standin import _rows

    rng = random.Random(5)
    rows, model = _rows.SortedRows(), []
    old_block, _rows.BLOCK = _rows.BLOCK, 8  # small blocks: splits and empty blocks happen
    try:
        keys = rng.sample(range(100_000), 3000)
        batch = [(k, str(k).encode()) for k in keys[:1000]]
        rows.add_many(batch)  # many at once: one sort
        model += batch
        for key in keys[1000:]:
            rows.add_many([(key, str(key).encode())])  # one by one: inserted in place
            model.append((key, str(key).encode()))
            if rng.random() < 0.4:
                gone = model.pop(rng.randrange(len(model)))
                assert rows.remove(gone[0])
            assert not rows.remove(-1)
        model.sort()
        bodies = [body for _, body in model]
        assert len(rows) == len(model) and list(rows) == bodies
        for start in (0, 1, 7, 8, 9, 500, len(model) - 3, len(model), len(model) + 10):
            assert rows.page(start, start + 37) == bodies[start:start + 37]
        assert rows.at(17) == bodies[17]
    finally:
        _rows.BLOCK = old_block


def test_bulk_rows_load_and_page_like_bulk_world(client: httpx.Client) -> None:
    from standin import bulk_rows

    with TaskCenterStandIn(max_page=300) as rows_loaded, \
            httpx.Client(base_url=rows_loaded.url) as fast:
        rows_loaded.load_rows(*bulk_rows(2500, 3, NOW, seed=4))
        groups, jobs = bulk_world(2500, 3, NOW, seed=4)
        for scope in [None, *(g.id for g in groups)]:
            listed: list[dict[str, object]] = []
            while True:
                params: dict[str, str | int] = {"offset": len(listed)}
                if scope:
                    params["server_group_id"] = scope
                page = fast.get(JOBS, params=params).json()["failure_jobs"]
                if not page:
                    break
                listed += page
            expected = [r for r, g in jobs if g == scope]
            expected.sort(key=lambda r: str(r["begin_time"]), reverse=True)
            assert listed == expected
        target = str(jobs[-1][0]["resource_id"])
        assert fast.delete(f"{JOBS}/{target}").status_code == 204
        assert rows_loaded.job_count() == 2499 and not rows_loaded.listed(target)


def test_repeated_records_page_by_position() -> None:
    with TaskCenterStandIn(repeat_records=3) as odd, httpx.Client(base_url=odd.url) as c:
        gid = _one_group(odd, 10)
        names = [r["resource_name"] for r in odd.records(gid)]
        body = c.get(JOBS, params={"server_group_id": gid, "offset": 4, "limit": 7}).json()
        assert [r["resource_name"] for r in body["failure_jobs"]] == \
            [names[i // 3] for i in range(4, 11)]


def test_a_dripping_server_sends_the_whole_answer_one_byte_at_a_time(
    standin: TaskCenterStandIn, client: httpx.Client
) -> None:
    whole = client.get(JOBS).content
    standin.inject("GET", "failure-jobs", Fault(passthrough=True, drip=0.01))
    import time

    started = time.monotonic()
    with client.stream("GET", JOBS) as answer:
        assert answer.status_code == 200  # the headers came first
        pieces = list(answer.iter_raw())
    assert b"".join(pieces) == whole
    assert time.monotonic() - started >= 0.01 * len(whole)  # a lower bound: the drip
    standin.drip_seconds = 0.01  # the same for every answer
    assert client.get(JOBS).content == whole


def test_an_oversized_page_is_padded_json_the_server_never_holds(
    standin: TaskCenterStandIn, client: httpx.Client
) -> None:
    gid = _one_group(standin, 5)
    plain = client.get(JOBS, params={"server_group_id": gid}).json()
    standin.page_bytes = 3 * 1024 * 1024
    answer = client.get(JOBS, params={"server_group_id": gid})
    assert int(answer.headers["content-length"]) == len(answer.content) >= 3 * 1024 * 1024
    padded = answer.json()
    assert padded["failure_jobs"] == plain["failure_jobs"] and set(padded) == {
        "count", "failure_jobs", "padding"}


def test_a_log_that_keeps_the_last_requests_still_counts_them_all() -> None:
    with TaskCenterStandIn(log_keep=3) as kept, httpx.Client(base_url=kept.url) as c:
        for i in range(10):
            c.delete(f"{JOBS}/x{i}")
        assert [r.path.rsplit("/", 1)[1] for r in kept.requests] == ["x7", "x8", "x9"]
        assert kept.request_counts() == ({"DELETE": 10}, {"DELETE 404": 10})


def test_main_serves_a_bulk_world_with_oversized_pages() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "standin", "--port", "0", "--bulk", "3000", "--groups", "4",
         "--page-mb", "1"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        url, _ = proc.stdout.readline().split()
        assert httpx.get(f"{url}{GROUPS}").json()["count"] == 4
        answer = httpx.get(f"{url}{JOBS}")
        assert len(answer.content) >= 1024 * 1024 and len(answer.json()["failure_jobs"]) == 150
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
