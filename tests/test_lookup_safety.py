"""The lookup index and its scope views never let an event delete what the world keeps.

Generated worlds through the production path (functions-framework, the stand-in over
loopback): protection groups and the top level hold expired and fresh failed tasks of a
few resources, some resources in several scopes; a dry-run sweep warms the index and the
views; then, maybe, a fresh failure of some resource appears in some scope; then one
expiry event names an expired task. The oracle is the world's own: with the default
policy (7 days) a fresh record is kept, and a DELETE by resource_id (the DELETE id
field) removes every record of that resource, in every scope.

* Every record that existed when the views were written is weighed: no fresh one of
  them is ever removed.
* With ``LISTING_MAX_AGE`` shorter than the time between the sweep and the event, no
  view may stand for a listing: no fresh record is removed at all, however recent.
* When nothing fresh shares the task's resource, before or after the sweep, the task
  is deleted (the properties are not met by deleting nothing).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from standin import OutcomeSink, TaskCenterStandIn
from tests.conftest import EXPIRED, FRESH, PROJECT, TOKEN, FunctionFactory, failed_task

GROUPS = ["g0", "g1", "g2", "g3"]
SCOPES: list[str | None] = [None, *GROUPS]


@dataclass(frozen=True)
class Placed:
    scope: str | None
    resource: int
    fresh: bool


placed = st.builds(Placed, st.sampled_from(SCOPES), st.integers(0, 2), st.booleans())


@dataclass(frozen=True)
class World:
    records: list[Placed]
    target: int  # which expired record the event names
    later: Placed | None  # a fresh failure that appears after the sweep, if any
    views_too_old: bool


@st.composite
def worlds(draw: st.DrawFn) -> World:
    records = draw(st.lists(placed, min_size=1, max_size=8))
    records.append(Placed(draw(st.sampled_from(SCOPES)), draw(st.integers(0, 2)), False))
    expired = [i for i, r in enumerate(records) if not r.fresh]
    later = draw(st.none() | st.builds(Placed, st.sampled_from(SCOPES), st.integers(0, 2),
                                       st.just(True)))
    return World(records, draw(st.sampled_from(expired)), later, draw(st.booleans()))


def test_warm_events_never_delete_a_record_the_world_keeps(
    sink: OutcomeSink, make_function: FunctionFactory
) -> None:
    outcomes = {"deleted": 0, "kept": 0}

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.function_scoped_fixture])
    @given(world=worlds())
    def check(world: World) -> None:
        run = uuid.uuid4().hex[:8]  # ids of this example only
        resources = [f"res-{run}-{n}" for n in range(3)]

        def record(p: Placed) -> dict[str, Any]:
            return failed_task(FRESH if p.fresh else EXPIRED,
                               resource_id=resources[p.resource])

        with TaskCenterStandIn(project_id=PROJECT, token=TOKEN) as standin:
            for group in GROUPS:
                standin.add_group(group)
            made = [record(p) for p in world.records]
            standin.add_jobs((r, p.scope) for r, p in zip(made, world.records, strict=True))
            env: dict[str, str] = {"SDRS_ENDPOINT": standin.url}
            if world.views_too_old:
                env["LISTING_MAX_AGE"] = "0.001"
            function = make_function(**env)
            assert function.send("sdrs.failurejob.sweep", {"dry_run": True}
                                 ).status_code == 200
            if world.later is not None:
                standin.add_job(record(world.later), world.later.scope)
            standin.reset_log()
            target = made[world.target]

            response = function.send("sdrs.failurejob.expired",
                                     {"failure_job_id": target["resource_id"]})

            assert response.status_code == 200
            deleted = set(standin.deletes())
        assert deleted <= {target["resource_id"]}
        removed = [(p, r) for p, r in zip(world.records, made, strict=True)
                   if r["resource_id"] in deleted]
        assert not any(p.fresh for p, _ in removed), "a fresh record listed by the sweep"
        later_removed = world.later is not None \
            and resources[world.later.resource] in deleted
        if world.views_too_old:
            assert not later_removed, "a fresh record, with no view recent enough"
        shares_fresh = any(p.fresh and p.resource == world.records[world.target].resource
                           for p in world.records)
        later_shares = world.later is not None \
            and world.later.resource == world.records[world.target].resource
        if not shares_fresh and not later_shares:
            assert deleted == {target["resource_id"]}, "nothing fresh shares it: deleted"
        outcomes["deleted" if deleted else "kept"] += 1

    check()
    assert outcomes["deleted"] and outcomes["kept"]  # both sides of the property were met
