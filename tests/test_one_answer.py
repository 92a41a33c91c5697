"""One answer on every path: the event, the CTS trace, ``POST /retry``, the dry-run sweep,
``plan`` and ``explain`` give each task the same decision, and no path deletes what the
world keeps.

The oracle is the world, never the planner: each world below states its records (which
scope, which resource, old or fresh, held or not) and a small, separate model of the
retention rules (``expected``) says which tasks may go: a task goes only if every copy of
it is old and not held, it is not among the newest ``keep_latest`` of its resource, every
task sharing its DELETE id may go too, and every listing was complete. Each path runs
through the production entry: functions-framework for events, CTS traces, sweeps and
``POST /retry``; the command line's ``main`` for ``plan`` and ``explain``. The paths that
delete each get a world of their own (the same records), so that one path's DELETEs do
not change what the next one sees.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from failjob_reaper import cli
from failjob_reaper.ids import is_valid_id
from standin import OutcomeSink, TaskCenterStandIn, cts_trace, format_begin_time
from tests.conftest import PROJECT, TOKEN, FunctionFactory, data_of

NOW = datetime.now(UTC)
OLD, FRESH = timedelta(days=30), timedelta(hours=1)
HOLD = "prod-"
API_TOKEN = "manual-api-token-0123456789"
Verdict = Literal["delete", "keep"]


@dataclass(frozen=True)
class Copy:
    scope: str | None
    age: timedelta
    name: str = "pi"
    """``prod-...`` is held by the world's policy."""


@dataclass
class Job:
    job_id: str
    resource: str
    copies: list[Copy]
    delete_id: str | None = "<resource>"
    """The value of the id field, when it is not the resource id / job id (None: absent)."""

    def record(self, copy: Copy, id_field: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "job_status": "FAIL", "job_id": self.job_id, "resource_id": self.resource,
            "resource_name": copy.name, "resource_type": "protectedInstance",
            "failure_status": "createFail", "job_type": "createProtectedInstance",
            "begin_time": format_begin_time(NOW - copy.age), "error_code": "EVS.2024",
        }
        if self.delete_id != "<resource>":
            if self.delete_id is None:
                record.pop(id_field, None)
            else:
                record[id_field] = self.delete_id
        return record

    def id_value(self, id_field: str) -> str | None:
        record = self.record(self.copies[0], id_field)
        value = record.get(id_field)
        return str(value) if is_valid_id(value) else None


@dataclass
class World:
    name: str
    jobs: list[Job]
    groups: list[str] = field(default_factory=list)
    id_field: str = "resource_id"
    keep_latest: int = 0
    incomplete: bool = False

    @property
    def policy(self) -> dict[str, Any]:
        return {"default_retention": "7d", "keep_latest_per_resource": self.keep_latest,
                "holds": {"resource_names": [HOLD + "*"]},
                "guards": {"max_deletions_per_sweep": 10_000}}

    def standin(self) -> TaskCenterStandIn:
        server = TaskCenterStandIn(project_id=PROJECT, token=TOKEN, id_field=self.id_field,
                                   ignore_offset="jobs" if self.incomplete else False)
        for group in self.groups:
            server.add_group(group)
        for job in self.jobs:
            for copy in job.copies:
                server.add_job(job.record(copy, self.id_field), copy.scope)
        return server

    # -- the oracle: the world's own model of the rules ------------------------------

    def alone_may_go(self, job: Job) -> bool:
        if any(c.age < timedelta(days=7) or c.name.startswith(HOLD) for c in job.copies):
            return False
        if self.keep_latest:
            if not self.carries_resource(job):
                return False  # no resource to rank it in: kept, to be safe
            newest = sorted((j for j in self.jobs
                             if j.resource == job.resource and self.carries_resource(j)),
                            key=lambda j: min(c.age for c in j.copies))
            if job in newest[: self.keep_latest]:
                return False
        return True

    def carries_resource(self, job: Job) -> bool:
        return bool(job.record(job.copies[0], self.id_field).get("resource_id"))

    def expected(self) -> dict[str, Verdict]:
        """Per job_id: does the task go (or would it, were it not for its missing id)?"""
        out: dict[str, Verdict] = {}
        for job in self.jobs:
            delete_id = job.id_value(self.id_field)
            if delete_id is None:  # no DELETE can name it: the policy's word alone
                out[job.job_id] = "delete" if self.alone_may_go(job) else "keep"
                continue
            sharing = [j for j in self.jobs if j.id_value(self.id_field) == delete_id]
            go = not self.incomplete and all(self.alone_may_go(j) for j in sharing)
            out[job.job_id] = "delete" if go else "keep"
        return out

    def jobs_by_id(self, delete_id: str | None) -> list[Job]:
        return [j for j in self.jobs if j.id_value(self.id_field) == delete_id]


def _gid(n: int) -> str:
    return str(uuid.UUID(int=0xA000 + n, version=4))


def _job(n: int, resource: str, *copies: Copy, delete_id: str | None = "<resource>") -> Job:
    return Job(f"job{n:04d}-{uuid.uuid4().hex[:8]}", resource, list(copies), delete_id)


def _resource(n: int) -> str:
    return str(uuid.UUID(int=0xB000 + n, version=4))


G1, G2 = _gid(1), _gid(2)


def named_worlds() -> list[World]:
    r = [_resource(i) for i in range(10)]
    return [
        World("shared resource_id, fresh in a group", [
            _job(1, r[1], Copy(None, OLD)), _job(2, r[1], Copy(G1, FRESH)),
            _job(3, r[2], Copy(None, OLD)),
        ], [G1]),
        World("shared resource_id, held in a group", [
            _job(1, r[1], Copy(None, OLD)), _job(2, r[1], Copy(G1, OLD, "prod-db")),
            _job(3, r[2], Copy(G1, OLD)),
        ], [G1]),
        World("keep-latest 1 by job_id across scopes", [
            _job(1, r[1], Copy(None, OLD)), _job(2, r[1], Copy(G1, timedelta(days=10))),
            _job(3, r[2], Copy(G1, OLD)),
        ], [G1], id_field="job_id", keep_latest=1),
        World("records without a usable id", [
            _job(1, r[1], Copy(None, OLD), delete_id=None),
            _job(2, r[2], Copy(G1, OLD), delete_id="../x"),
            _job(3, r[3], Copy(None, FRESH), delete_id=None),
            _job(4, r[4], Copy(G1, OLD)),
        ], [G1]),
        World("an incomplete listing", [
            _job(1, r[1], Copy(None, OLD)), _job(2, r[2], Copy(G1, OLD)),
            _job(3, r[3], Copy(G1, FRESH)),
        ], [G1], incomplete=True),
        World("one job_id listed twice with different contents", [
            _job(1, r[1], Copy(None, OLD), Copy(G1, FRESH)),
            _job(2, r[2], Copy(G1, OLD)),
        ], [G1], id_field="job_id"),
    ]


def generated_world(seed: int) -> World:
    rng = random.Random(seed)
    groups = [_gid(10 + seed * 3 + i) for i in range(2)]
    scopes: list[str | None] = [None, *groups]
    resources = [_resource(100 + seed * 10 + i) for i in range(4)]
    id_field = rng.choice(["resource_id", "job_id"])
    jobs = []
    for n in range(8):
        copies = [Copy(rng.choice(scopes), rng.choice([OLD, OLD, FRESH, timedelta(days=9)])
                       + timedelta(minutes=n),
                       HOLD + "x" if rng.random() < 0.15 else "pi")]
        if rng.random() < 0.25:  # the same job listed in a second scope, maybe otherwise
            other = rng.choice([s for s in scopes if s != copies[0].scope])
            copies.append(Copy(other, rng.choice([copies[0].age, OLD, FRESH]), copies[0].name))
        delete_id: str | None = "<resource>"
        if id_field == "resource_id" and rng.random() < 0.1:
            delete_id = None  # (by job_id the paths name tasks by it: it stays)
        jobs.append(_job(n, rng.choice(resources), *copies, delete_id=delete_id))
    return World(f"generated {seed}", jobs, groups, id_field=id_field,
                 keep_latest=rng.choice([0, 0, 1, 2]))


WORLDS = [*named_worlds(), *(generated_world(seed) for seed in range(1, 11))]

_DELETE_LIKE = {"deleted", "already_deleted", "would_delete"}


def verdict_of(outcome: str, error: dict[str, Any] | None) -> Verdict:
    if outcome in _DELETE_LIKE:
        return "delete"
    if outcome == "delete_failed" and (error or {}).get("code") == "reaper.no_id":
        return "delete"  # the policy let it go; no DELETE can name it
    if outcome == "retained":
        return "keep"
    raise AssertionError(f"unexpected outcome {outcome} ({error})")


@pytest.fixture
def run(make_function: FunctionFactory, sink: OutcomeSink, clean_env: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[World], None]]:
    with ExitStack() as stack:
        def check(world: World) -> None:
            expected = world.expected()
            env = {"SDRS_FAILURE_JOB_ID_FIELD": world.id_field, "SWEEP_EMIT_RETAINED": "true",
                   "RETRY_API_TOKEN": API_TOKEN}
            seen: dict[str, dict[str, Verdict]] = {}

            def from_outcomes(path: str, events: list[dict[str, Any]]) -> None:
                mine = seen.setdefault(path, {})
                for data in events:
                    if data.get("outcome") == "sweep_completed":
                        continue
                    verdict = verdict_of(data["outcome"], data.get("error"))
                    by_id = world.jobs_by_id(data["failure_job_id"]) \
                        if data["failure_job_id"] is not None else []
                    named = by_id or [j for j in world.jobs
                                      if j.job_id == (data.get("job") or {}).get("job_id")]
                    for job in named:
                        mine[job.job_id] = verdict

            def safe(server: TaskCenterStandIn, path: str) -> None:
                deleted = set(server.deletes())
                for job in world.jobs:
                    if expected[job.job_id] == "keep":
                        assert job.id_value(world.id_field) not in deleted, (world.name, path)
                        assert server.listed(job.job_id) or world.id_field != "job_id"

            # The event path, one job-failed event per task (its job_id), on a world of its own.
            server = stack.enter_context(world.standin())
            function = make_function(policy=world.policy, SDRS_ENDPOINT=server.url, **env)
            for job in world.jobs:
                sink.clear()
                function.send("sdrs.job.failed", {"job_id": job.job_id})
                [data] = [data_of(e) for e in sink.events]
                from_outcomes("event", [data])
            safe(server, "event")

            # The CTS path: one trace per resource, deciding every task of it.
            server = stack.enter_context(world.standin())
            function = make_function(policy=world.policy, SDRS_ENDPOINT=server.url, **env)
            sink.clear()
            traced = [j for j in world.jobs  # a trace names a resource its record carries
                      if is_valid_id(j.record(j.copies[0], world.id_field).get("resource_id"))]
            for resource in dict.fromkeys(j.resource for j in traced):
                function.send("SDRS:CloudTrace:ApiCall", cts_trace(resource, now=NOW),
                              source="HC.SDRS")
            from_outcomes("cts", [data_of(e) for e in sink.events])
            safe(server, "cts")

            # POST /retry, once per DELETE id (a task without one cannot be named there).
            server = stack.enter_context(world.standin())
            http = make_function("on_http", "http", policy=world.policy,
                                 SDRS_ENDPOINT=server.url, **env)
            client = http.app.test_client()
            for delete_id in dict.fromkeys(j.id_value(world.id_field) for j in world.jobs):
                if delete_id is None:
                    continue
                answer = client.post("/retry", json={"failure_job_id": delete_id},
                                     headers={"Authorization": f"Bearer {API_TOKEN}"})
                assert answer.status_code == 200, answer.get_data(as_text=True)
                from_outcomes("retry", [answer.get_json()])
            safe(server, "retry")

            # The dry-run sweep, plan and explain: one world, nothing deleted.
            server = stack.enter_context(world.standin())
            function = make_function(policy=world.policy, SDRS_ENDPOINT=server.url, **env)
            sink.clear()
            function.send("sdrs.failurejob.sweep", {"dry_run": True})
            from_outcomes("dry-run sweep", [data_of(e) for e in sink.events])

            capsys.readouterr()
            assert cli.main(["plan", "--output", "json", "--no-progress"]) in (0, 1)
            rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
            seen["plan"] = {row["job_id"]: verdict_of(row["action"], None)
                            for row in rows if row.get("type") == "task"}

            explained = seen.setdefault("explain", {})
            for job in world.jobs:
                cli.main(["explain", job.job_id, "--by", "job_id"])
                out = capsys.readouterr().out
                [line] = [x for x in out.splitlines() if x.startswith("decision:")]
                action = line.split(":", 1)[1].strip()
                explained[job.job_id] = verdict_of(
                    action, {"code": "reaper.no_id"} if action == "delete_failed" else None)
            assert server.deletes() == []

            reachable = {"retry": {j.job_id for j in world.jobs
                                   if j.id_value(world.id_field) is not None},
                         "cts": {j.job_id for j in traced}}
            for path, verdicts in seen.items():
                assert verdicts == {k: v for k, v in expected.items()
                                    if k in reachable.get(path, expected)}, (world.name, path)

        yield check


@pytest.mark.slow
@pytest.mark.parametrize("world", WORLDS, ids=[w.name for w in WORLDS])
def test_every_path_gives_each_task_the_worlds_answer(
    run: Callable[[World], None], world: World
) -> None:
    run(world)


def test_a_wrong_group_hint_searches_the_other_scopes_whatever_the_code(
    make_function: FunctionFactory, sink: OutcomeSink
) -> None:
    world = World("hint", [_job(1, _resource(1), Copy(G1, OLD))], [G1])
    for status, code in ((400, "SDRS.0207"), (404, "SDRS.9999"), (400, "SDRS.0201")):
        with world.standin() as server:
            server.unknown_group_answer = (status, code)
            function = make_function(policy=world.policy, SDRS_ENDPOINT=server.url)
            sink.clear()
            job = world.jobs[0]
            function.send("sdrs.failurejob.expired",
                          {"failure_job_id": job.resource, "server_group_id": _gid(99)})
            [data] = [data_of(e) for e in sink.events]
            assert data["outcome"] == "deleted", (status, code, data["reason"])
            assert server.deletes() == [job.resource]


@pytest.mark.parametrize("answer", [(400, "SDRS.0207"), (404, "SDRS.9999")])
def test_a_sweep_of_a_group_the_group_list_does_not_name_lists_nothing(
    make_function: FunctionFactory, sink: OutcomeSink, answer: tuple[int, str]
) -> None:
    world = World("no such group", [_job(1, _resource(1), Copy(None, OLD))], [G1])
    with world.standin() as server:
        server.unknown_group_answer = answer
        make_function(policy=world.policy, SDRS_ENDPOINT=server.url).send(
            "sdrs.failurejob.sweep", {"server_group_id": _gid(98)})
        [summary] = [data_of(e) for e in sink.events]
        assert (summary["listed"], summary["aborted"], summary["partial"]) == (0, False, False)
        assert server.deletes() == []


def test_a_refusal_to_list_a_group_the_group_list_names_stands(
    make_function: FunctionFactory, sink: OutcomeSink
) -> None:
    from standin import Fault

    world = World("refused", [_job(1, _resource(1), Copy(G1, OLD))], [G1])
    with world.standin() as server:
        server.inject("GET", "/failure-jobs", Fault(status=400))
        make_function(policy=world.policy, SDRS_ENDPOINT=server.url).send(
            "sdrs.failurejob.sweep", {"server_group_id": G1})
        [summary] = [data_of(e) for e in sink.events]
        assert summary["partial"] is True and "listing failed" in summary["partial_reason"]
        assert server.deletes() == []
