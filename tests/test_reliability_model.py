"""Model-based: a hypothesis state machine drives the core (``build_components`` with a
controlled clock and a collecting emitter) through the cloudevent adapter against
one task-center stand-in, while a plain model predicts every step.

Steps: new failures, deletions by others, clock advances, policy switches, a sink
that refuses, single events and sweeps. After each step: nothing the policy kept at
the decision time was deleted, the stand-in matches the model, and the outcomes
are the ones the model predicted.

The DELETE path here is ``job_id`` (unique per failed task) so that keep-latest
can rank several failed tasks of one resource; the soak covers ``resource_id``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from failjob_reaper.components import Components, build_components
from failjob_reaper.policy import Decision, Policy, decide, parse_policy
from handlers.cloudevent import Redeliver, process
from standin import TaskCenterStandIn
from tests.conftest import PROJECT, TOKEN, data_of
from tests.reliability_support import (
    DELETE_PATH,
    CollectingEmitter,
    ControlledClock,
    applied_deletes,
    delete_requests,
    iso,
    kinds,
    settings_for,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
GROUPS = ("7e1d0c3a-0000-4000-8000-00000000000a", "7e1d0c3a-0000-4000-8000-00000000000b")
SCOPES: tuple[str | None, ...] = (None, *GROUPS)
RESOURCES = tuple(f"9a0b0c0d-0000-4000-8000-00000000000{i}" for i in range(4))

POLICIES: dict[str, dict[str, Any]] = {
    "default": {},
    "rules": {
        "default_retention": "3d",
        "rules": [
            {"name": "drills", "match": {"resource_type": ["disaster_recovery_drills"]},
             "retention": "1d"},
            {"name": "keep-failovers", "match": {"failure_status": ["failoverFail"]},
             "retention": "forever"},
            {"name": "evs-now", "match": {"error_code": "EVS.9*"}, "retention": "0s"},
            {"name": "group-b-long", "match": {"server_group_id": GROUPS[1]},
             "retention": "20d"},
        ],
        "holds": {"resource_names": ["prod-*"]},
    },
    "keep-latest": {"keep_latest_per_resource": 1, "default_retention": "2d"},
    "dry": {"dry_run": True, "default_retention": "1d"},
    "guarded": {"default_retention": "1d", "guards": {"max_deletions_per_sweep": 2}},
}
KINDS = ("plain", "drill", "failover", "held", "evs", "unparsable")
AGES_HOURS = (-3, 1, 20, 30, 47, 49, 80, 24 * 8, 24 * 30)


def make_record(n: int, kind: str, begin: datetime, resource: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "job_status": "FAIL",
        "resource_id": resource,
        "resource_name": f"instance-{n:04d}",
        "resource_type": "protectedInstance",
        "failure_status": "createFail",
        "job_id": f"ff8080826{n:023x}",
        "job_type": "createProtectedInstance",
        "begin_time": iso(begin),
        "error_code": "ECS.0011",
        "fail_reason": "model",
    }
    if kind == "drill":
        record["resource_type"] = "disaster_recovery_drills"
    elif kind == "failover":
        record["failure_status"] = "failoverFail"
    elif kind == "held":
        record["resource_name"] = f"prod-db-{n}"
    elif kind == "evs":
        record["error_code"] = "EVS.9001"
    elif kind == "unparsable":
        record["begin_time"] = "yesterday-ish"
    return record


class ReaperMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="reaper-model-"))
        self.standin = TaskCenterStandIn(project_id=PROJECT, token=TOKEN, id_field="job_id")
        self.standin.start()
        for group in GROUPS:
            self.standin.add_group(group)
        self.clock = ControlledClock(T0)
        self.emitter = CollectingEmitter()
        self.numbers = itertools.count(1)
        self.events = itertools.count(1)
        # job_id -> (record, scope): what the stand-in lists, as far as the model knows.
        self.live: dict[str, tuple[dict[str, Any], str | None]] = {}
        self.ever: set[str] = set()
        self.policy_name = "default"
        self.policy: Policy = parse_policy(POLICIES["default"])
        self.app: Components = self._build("default")
        self.log_mark = 0
        self.violations: list[str] = []
        self.outcome_ids: dict[tuple[str, str, str], str] = {}
        self.refused_steps: set[str] = set()

    # -- plumbing ---------------------------------------------------------------------

    def _build(self, name: str) -> Components:
        path = self.tmp / f"{name}.json"
        path.write_text(json.dumps(POLICIES[name]))
        app = build_components(
            settings_for(self.standin.url, RETENTION_POLICY_FILE=str(path),
                         SDRS_FAILURE_JOB_ID_FIELD="job_id", SWEEP_CONCURRENCY="3"),
            emitter=self.emitter, clock=self.clock,
        )
        return app

    def teardown(self) -> None:
        self.app.reaper.client.close()
        self.standin.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _scope_records(self, scope: str | None) -> list[dict[str, Any]]:
        return [r for r, s in self.live.values() if s == scope]

    def _decision(self, record: dict[str, Any], scope: str | None, now: datetime) -> Decision:
        # Keep-latest ranks among the resource's failed tasks in every scope (docs/policy.md).
        siblings = [r for r, _ in self.live.values()
                    if r.get("resource_id") == record.get("resource_id")]
        return decide(record, self.policy, now, siblings=siblings, server_group_id=scope)

    def _dry(self) -> bool:
        return self.policy.dry_run

    def _send(self, event_type: str, data: Any, event_id: str) -> bool:
        """Through the cloudevent adapter; True if acknowledged (2xx)."""
        attributes = {"id": event_id, "source": "/model", "type": event_type,
                      "specversion": "1.0"}
        try:
            process(self.app, attributes, data)
        except Redeliver:
            return False
        return True

    def _new_requests(self) -> list[Any]:
        requests = self.standin.requests
        fresh, self.log_mark = requests[self.log_mark:], len(requests)
        return fresh

    def _own(self, events: list[Any], event_id: str, refused: bool) -> list[Any]:
        """This step's outcomes. The others are outcomes of earlier refused steps, sent
        again from the publisher's outbox before this step's: they keep their ids."""
        if refused:
            self.refused_steps.add(event_id)
        own = []
        for event in events:
            cause = data_of(event)["causation"]["id"]
            if cause == event_id:
                own.append(event)
            else:
                assert cause in self.refused_steps, f"unexpected outcome of {cause}"
                self._check_outcome_ids([event], cause)
        return own

    def _check_outcome_ids(self, events: list[Any], event_id: str) -> None:
        for event in events:
            key = (event_id, str(event.get("subject") or ""), str(event["type"]))
            seen = self.outcome_ids.setdefault(key, str(event["id"]))
            assert seen == event["id"], f"outcome id changed for {key}"

    # -- rules ---------------------------------------------------------------------------

    @rule(kind=st.sampled_from(KINDS), age=st.sampled_from(AGES_HOURS),
          resource=st.sampled_from(RESOURCES), scope=st.sampled_from(SCOPES))
    def new_failure(self, kind: str, age: int, resource: str, scope: str | None) -> None:
        n = next(self.numbers)
        record = make_record(n, kind, self.clock() - timedelta(hours=age), resource)
        self.standin.add_job(record, scope)
        self.live[record["job_id"]] = (record, scope)
        self.ever.add(record["job_id"])

    @precondition(lambda self: bool(self.live))
    @rule(pick=st.integers(min_value=0))
    def deleted_by_someone_else(self, pick: int) -> None:
        job_id = sorted(self.live)[pick % len(self.live)]
        self.standin.remove_job(job_id)
        del self.live[job_id]

    @rule(hours=st.sampled_from((1, 6, 25, 24 * 3, 24 * 8)))
    def clock_advances(self, hours: int) -> None:
        self.clock.advance(timedelta(hours=hours))

    @rule(name=st.sampled_from(sorted(POLICIES)))
    def policy_changes(self, name: str) -> None:
        self.app.reaper.client.close()
        self.policy_name = name
        self.policy = parse_policy(POLICIES[name])
        self.app = self._build(name)

    @rule(refusals=st.integers(min_value=1, max_value=2))
    def sink_refuses(self, refusals: int) -> None:
        self.emitter.refuse = refusals

    @rule(pick=st.integers(min_value=0), gone=st.booleans(),
          key=st.sampled_from(("failure_job_id", "job_id")),
          event_type=st.sampled_from(("sdrs.job.failed", "sdrs.failurejob.expired")),
          hint=st.booleans())
    def single_event(self, pick: int, gone: bool, key: str, event_type: str,
                     hint: bool) -> None:
        if gone or not self.live:
            job_id, scope = f"ff8080826{uuid.uuid4().hex[:23]}", None
        else:
            job_id = sorted(self.live)[pick % len(self.live)]
            scope = self.live[job_id][1]
        data: dict[str, Any] = {key: job_id}
        if hint and scope is not None:
            data["server_group_id"] = scope
        now = self.clock()
        refused = self.emitter.refuse > 0
        if job_id in self.live:
            record = self.live[job_id][0]
            decision = self._decision(record, scope, now)
            expected = ("retained" if decision.action == "retain"
                        else "would_delete" if self._dry() else "deleted")
        else:
            decision, expected = None, "already_deleted"
        self._new_requests()
        event_id = f"evt-{next(self.events)}"
        acknowledged = self._send(event_type, data, event_id)
        requests = self._new_requests()
        events = self._own(self.emitter.take(), event_id, refused)

        applied = applied_deletes(requests)
        if expected == "deleted" and refused:
            # The sink refuses: the invocation first delivers what is pending and may stop
            # there, before any new work it could not report (redelivery decides again).
            assert applied in ([], [job_id])
            if applied:
                del self.live[job_id]
        elif expected == "deleted":
            assert applied == [job_id]
            del self.live[job_id]
        else:
            assert applied == [], f"{expected}: {decision} but DELETE {applied}"
        assert delete_requests(requests) == [r for r in requests if r.method == "DELETE"]
        assert all(DELETE_PATH.match(r.path) for r in delete_requests(requests))
        if refused:
            assert not acknowledged and events == []
        else:
            assert acknowledged
            assert kinds(events) == [expected]
            data_out = data_of(events[0])
            if decision is not None:
                assert data_out["rule"] == decision.rule
            self._check_outcome_ids(events, event_id)
            if refused is False and expected == "already_deleted":
                assert delete_requests(requests) == []

    @rule(dry=st.booleans())
    def sweep(self, dry: bool) -> None:
        now = self.clock()
        refused = self.emitter.refuse > 0
        planned = {job_id for job_id, (record, scope) in self.live.items()
                   if self._decision(record, scope, now).action == "delete"}
        kept = set(self.live) - planned
        guard = len(planned) > self.policy.guards.max_deletions_per_sweep
        dry_run = dry or self._dry()
        self._new_requests()
        event_id = f"tick-{next(self.events)}"
        acknowledged = self._send("sdrs.failurejob.sweep", {"dry_run": dry}, event_id)
        requests = self._new_requests()
        events = self._own(self.emitter.take(), event_id, refused)
        applied = set(applied_deletes(requests))

        assert not (applied & kept), f"kept by the policy but deleted: {applied & kept}"
        assert all(DELETE_PATH.match(r.path) for r in delete_requests(requests))
        assert len(applied) == len(applied_deletes(requests))  # nothing twice
        if guard or dry_run:
            assert applied == set()
        elif not refused:
            assert applied == planned
        for job_id in applied:
            del self.live[job_id]
        if refused:
            assert not acknowledged
            return
        assert acknowledged
        counts = Counter(kinds(events))
        summary = data_of(events[-1])
        assert kinds(events[-1:]) == ["sweep_completed"]
        assert summary["listed"] == len(planned) + len(kept)
        assert summary["deleted"] == len(applied) == counts["deleted"]
        if guard:
            assert summary["aborted"] is True
            assert summary["rules"].get("guard") == len(planned)
        elif dry_run:
            assert counts["would_delete"] == len(planned)
        else:
            assert {e["subject"] for e in events if kinds([e]) == ["deleted"]} == applied
        self._check_outcome_ids(events, event_id)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def standin_matches_the_model(self) -> None:
        listed = {scope: sorted(r["job_id"] for r in self.standin.records(scope))
                  for scope in SCOPES}
        expected = {scope: sorted(r["job_id"] for r in self._scope_records(scope))
                    for scope in SCOPES}
        assert listed == expected

    @invariant()
    def only_known_tasks_were_ever_deleted(self) -> None:
        assert set(applied_deletes(self.standin.requests)) <= self.ever
        assert not self.standin.batch_calls()


ReaperMachine.TestCase.settings = settings(
    max_examples=20, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestReaperModel = ReaperMachine.TestCase
