"""The pieces built on the StateStore - idempotency records, the delete journal, the sweep
lease, the outbox - each against both backends (in-process and a real redis-server)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from failjob_reaper.errors import OutcomeDeliveryError
from failjob_reaper.exactly_once import ExactlyOnce, Timing
from failjob_reaper.outcomes import Causation, Outcome, Publisher
from failjob_reaper.outcomes._model import OutcomeName
from failjob_reaper.state import StateStore
from failjob_reaper.state.idempotency import (
    Claim,
    Completed,
    Idempotency,
    IdempotencyConflict,
    IdempotencyInProgress,
    fingerprint,
)
from failjob_reaper.state.journal import DeleteJournal
from failjob_reaper.state.lease import Busy, Lease, SweepLease

# -- idempotency ---------------------------------------------------------------------------


def test_the_first_begin_claims_and_a_repeat_gets_the_first_answer(any_store: StateStore) -> None:
    idem = Idempotency(any_store, in_progress_ttl=30, wait=0.2)
    ask = fingerprint({"task": "A"})
    claim = idem.begin("src\x1fid-1", ask)
    assert isinstance(claim, Claim)
    idem.complete(claim, {"outcome": "deleted"})
    again = idem.begin("src\x1fid-1", ask)
    assert again == Completed({"outcome": "deleted"})


def test_the_same_identity_with_another_request_is_a_conflict(any_store: StateStore) -> None:
    idem = Idempotency(any_store, in_progress_ttl=30, wait=0.2)
    claim = idem.begin("key-1", fingerprint({"task": "A"}))
    assert isinstance(claim, Claim)
    idem.complete(claim, {"outcome": "deleted"})
    with pytest.raises(IdempotencyConflict):
        idem.begin("key-1", fingerprint({"task": "B"}))
    with pytest.raises(IdempotencyConflict):  # also while the first is still in progress
        other = idem.begin("key-2", fingerprint({"task": "A"}))
        assert isinstance(other, Claim)
        idem.begin("key-2", fingerprint({"task": "B"}))


def test_a_concurrent_duplicate_waits_for_the_answer(any_store: StateStore) -> None:
    idem = Idempotency(any_store, in_progress_ttl=30, wait=5.0, poll=0.01)
    ask = fingerprint({"task": "A"})
    claim = idem.begin("id", ask)
    assert isinstance(claim, Claim)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(idem.begin("id", ask)))
    waiter.start()
    idem.complete(claim, {"outcome": "retained"})
    waiter.join(timeout=10)
    assert got == [Completed({"outcome": "retained"})]


def test_a_duplicate_that_waited_long_enough_is_refused(any_store: StateStore) -> None:
    idem = Idempotency(any_store, in_progress_ttl=30, wait=0.1, poll=0.01)
    ask = fingerprint({"task": "A"})
    assert isinstance(idem.begin("id", ask), Claim)
    with pytest.raises(IdempotencyInProgress):
        idem.begin("id", ask)


def test_an_abandoned_or_expired_claim_lets_the_next_one_decide(any_store: StateStore) -> None:
    idem = Idempotency(any_store, in_progress_ttl=0.2, wait=2.0, poll=0.02)
    ask = fingerprint({"task": "A"})
    first = idem.begin("id", ask)
    assert isinstance(first, Claim)
    idem.abandon(first)
    second = idem.begin("id", ask)
    assert isinstance(second, Claim)
    # The holder of `second` dies: after its expiry, the next one claims (waiting meanwhile).
    third = idem.begin("id", ask)
    assert isinstance(third, Claim)
    idem.complete(second, {"outcome": "late"})  # the expired holder cannot overwrite it
    idem.complete(third, {"outcome": "deleted"})
    assert idem.begin("id", ask) == Completed({"outcome": "deleted"})


# -- journal ---------------------------------------------------------------------------


def test_an_unreported_delete_is_handed_over_exactly_once(any_store: StateStore) -> None:
    journal = DeleteJournal(any_store)
    journal.sending("task-1", "input-I", {"rule": "default", "job": {"job_id": "j"}})
    results: list[Any] = []
    start = threading.Barrier(4)

    def take() -> None:
        start.wait(timeout=5)
        results.append(journal.take_report("task-1"))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    taken = [r for r in results if r is not None]
    assert len(taken) == 1
    assert taken[0].by == "input-I" and taken[0].decision["job"] == {"job_id": "j"}
    assert journal.reported("task-1")
    assert journal.take_report("never-sent") is None


def _outcome(kind: OutcomeName, task: str = "task-1", **fields: Any) -> Outcome:
    return Outcome(outcome=kind, project_id="p", failure_job_id=task, trigger="event",
                   dry_run=False, causation=Causation(id="e1", source="/s"), **fields)


def test_settle_turns_the_dead_senders_delete_into_one_deleted(any_store: StateStore) -> None:
    shared = ExactlyOnce(any_store, Timing(task_seconds=30, sweep_seconds=60))
    shared.before_delete("task-1", Causation(id="e1", source="/s"),
                         {"rule": "default", "job": {"job_id": "j1"}, "reason": "expired"})
    first = shared.settle(_outcome("already_deleted", reason="not listed"))
    assert first.outcome == "deleted" and first.job == {"job_id": "j1"}
    again = shared.settle(_outcome("already_deleted", reason="not listed"))
    assert again.outcome == "already_deleted"
    assert shared.settle(_outcome("deleted")).outcome == "already_deleted"
    assert shared.settle(_outcome("already_deleted", task="other")).outcome == "already_deleted"


def test_settle_keeps_a_delete_that_was_answered_204(any_store: StateStore) -> None:
    shared = ExactlyOnce(any_store, Timing(task_seconds=30, sweep_seconds=60))
    shared.before_delete("task-2", Causation(id="e1", source="/s"), {})
    assert shared.settle(_outcome("deleted", task="task-2")).outcome == "deleted"
    assert shared.settle(_outcome("already_deleted", task="task-2")).outcome == "already_deleted"


# -- lease ---------------------------------------------------------------------------------


def test_one_sweep_holds_the_lease_and_tokens_only_grow(any_store: StateStore) -> None:
    lease = SweepLease(any_store)
    first = lease.acquire("sweep-A", ttl=30)
    assert isinstance(first, Lease)
    busy = lease.acquire("sweep-B", ttl=30)
    assert isinstance(busy, Busy) and busy.holder == "sweep-A" and busy.token == first.token
    lease.release(first)
    second = lease.acquire("sweep-B", ttl=30)
    assert isinstance(second, Lease) and second.token > first.token
    assert not lease.still_held(first) and lease.still_held(second)


def test_an_expired_lease_fences_its_old_holder(any_store: StateStore) -> None:
    lease = SweepLease(any_store)
    old = lease.acquire("slow", ttl=0.1)
    assert isinstance(old, Lease)
    new: Lease | Busy = Busy("", None)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # until the old lease expired, bounded
        new = lease.acquire("next", ttl=30)
        if isinstance(new, Lease):
            break
        time.sleep(0.02)
    assert isinstance(new, Lease) and new.token > old.token
    assert not lease.still_held(old)
    lease.release(old)  # the old holder cannot release the new lease
    assert lease.still_held(new)


# -- outbox --------------------------------------------------------------------------------


class FlakyEmitter:
    def __init__(self) -> None:
        self.down = False
        self.sent: list[str] = []

    def emit(self, event: CloudEvent) -> None:
        if self.down:
            raise OutcomeDeliveryError("sink down")
        self.sent.append(str(event["type"]))


def test_a_refused_outcome_waits_in_the_shared_outbox_for_any_instance(
    any_store: StateStore,
) -> None:
    first_emitter, second_emitter = FlakyEmitter(), FlakyEmitter()
    first = Publisher(first_emitter, source="s", state=any_store)
    second = Publisher(second_emitter, source="s", state=any_store)  # another instance
    first_emitter.down = True
    with pytest.raises(OutcomeDeliveryError):
        first.outcome(_outcome("deleted"))
    first.defer(_outcome("retained", task="task-3"))
    assert second.pending == 2
    assert second.flush() == set()
    assert second_emitter.sent == ["sdrs.failurejob.deleted", "sdrs.failurejob.retained"]
    assert first.pending == 0
    assert first.flush() == set() and first_emitter.sent == []


def test_an_outcome_being_sent_is_left_to_its_sender(any_store: StateStore) -> None:
    recorded = threading.Event()
    release = threading.Event()

    class SlowEmitter(FlakyEmitter):
        def emit(self, event: CloudEvent) -> None:
            recorded.set()
            release.wait(timeout=10)
            super().emit(event)

    slow = SlowEmitter()
    sender = Publisher(slow, source="s", state=any_store, send_window=30)
    other_emitter = FlakyEmitter()
    other = Publisher(other_emitter, source="s", state=any_store)
    thread = threading.Thread(target=lambda: sender.outcome(_outcome("deleted")))
    thread.start()
    assert recorded.wait(timeout=10)
    assert len(other.flush()) == 1  # pending, but its sender is at it
    release.set()
    thread.join(timeout=10)
    assert slow.sent == ["sdrs.failurejob.deleted"] and other_emitter.sent == []
    assert other.pending == 0


def test_the_outbox_is_bounded(any_store: StateStore) -> None:
    emitter = FlakyEmitter()
    emitter.down = True
    publisher = Publisher(emitter, source="s", state=any_store, outbox_limit=3)
    for n in range(5):
        publisher.defer(_outcome("retained", task=f"t{n}"))
    assert publisher.pending == 3
    emitter.down = False
    publisher.flush()
    assert len(emitter.sent) == 3


def test_an_input_naming_the_task_by_another_id_finds_the_journal_entry(
    any_store: StateStore,
) -> None:
    shared = ExactlyOnce(any_store, Timing(task_seconds=30, sweep_seconds=60))
    shared.before_delete("resource-1", Causation(id="e1", source="/s"), {"rule": "default"},
                         aliases=["job-1", "resource-1"])
    settled = shared.settle(_outcome("already_deleted", task="job-1"))
    assert (settled.outcome, settled.failure_job_id) == ("deleted", "resource-1")
    assert shared.settle(_outcome("already_deleted", task="job-1")).outcome == "already_deleted"
