"""Every key the function keeps in the state store is named in ``failjob_reaper.state.keys``
(issue 18): the function runs sweeps and events against each backend (in-process and a
real redis-server) through a store that notes every key it is asked about, and each key
must be one the module declares, written with the TTL the module fixes for it."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from failjob_reaper.components import Components, build_components
from failjob_reaper.state import StateStore
from failjob_reaper.state import keys as state_keys
from handlers._events import Redeliver, process
from standin import Fault, OutcomeSink, TaskCenterStandIn
from standin.smn import SmnStandIn
from tests.conftest import EXPIRED, FRESH, PROJECT, failed_task
from tests.reliability_support import settings_for

TOPIC = f"urn:smn:ap-southeast-3:{PROJECT}:failjob-reaper-alerts"
FAILED = "sdrs.job.failed"
SWEEP = "sdrs.failurejob.sweep"


class Recording:
    """A ``StateStore`` that notes every key it is asked about (and the TTL of every
    write), then does what the store it wraps does."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.seen: set[str] = set()
        self.ttls: list[tuple[str, float]] = []

    def _note(self, keys: Sequence[str], ttl: float | None = None) -> None:
        self.seen.update(keys)
        if ttl is not None:
            self.ttls.extend((key, ttl) for key in keys)

    def get(self, key: str) -> str | None:
        self._note([key])
        return self.inner.get(key)

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        self._note(keys)
        return self.inner.get_many(keys)

    def put(self, key: str, value: str, ttl: float) -> None:
        self._note([key], ttl)
        self.inner.put(key, value, ttl)

    def put_many(self, items: Mapping[str, str], ttl: float) -> None:
        self._note(list(items), ttl)
        self.inner.put_many(items, ttl)

    def add(self, key: str, value: str, ttl: float) -> bool:
        self._note([key], ttl)
        return self.inner.add(key, value, ttl)

    def replace_if(self, key: str, expected: str, value: str, ttl: float) -> bool:
        self._note([key], ttl)
        return self.inner.replace_if(key, expected, value, ttl)

    def delete_if(self, key: str, expected: str) -> bool:
        self._note([key])
        return self.inner.delete_if(key, expected)

    def delete(self, key: str) -> None:
        self._note([key])
        self.inner.delete(key)

    def incr(self, key: str, amount: int, ttl: float) -> int:
        self._note([key], ttl)
        return self.inner.incr(key, amount, ttl)

    def hash_put(self, key: str, field: str, value: str, ttl: float) -> None:
        self._note([key], ttl)
        self.inner.hash_put(key, field, value, ttl)

    def hash_replace(self, key: str, fields: Mapping[str, str], ttl: float) -> None:
        self._note([key], ttl)
        self.inner.hash_replace(key, fields, ttl)

    def hash_put_many(self, items: Mapping[str, Mapping[str, str]], ttl: float) -> None:
        self._note(list(items), ttl)
        self.inner.hash_put_many(items, ttl)

    def bits_put(self, key: str, meta: str, bits: bytes, ttl: float) -> None:
        self._note([key], ttl)
        self.inner.bits_put(key, meta, bits, ttl)

    def bits_get_many(
        self, keys: Sequence[str], offsets: Sequence[int]
    ) -> list[tuple[str, list[bool]] | None]:
        self._note(keys)
        return self.inner.bits_get_many(keys, offsets)

    def hash_get_all(self, key: str) -> dict[str, str]:
        self._note([key])
        return self.inner.hash_get_all(key)

    def hash_get_many(
        self, requests: Sequence[tuple[str, Sequence[str]]]
    ) -> list[list[str | None]]:
        self._note([key for key, _ in requests])
        return self.inner.hash_get_many(requests)

    def hash_delete(self, key: str, field: str) -> None:
        self._note([key])
        self.inner.hash_delete(key, field)

    def hash_len(self, key: str) -> int:
        self._note([key])
        return self.inner.hash_len(key)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def smn() -> Iterator[SmnStandIn]:
    with SmnStandIn(project_id=PROJECT) as server:
        yield server


def _send(app: Components, event_type: str, data: Any, event_id: str) -> bool:
    """One CloudEvent through the same core as the adapters; False: answered 5xx."""
    try:
        process(app, {"id": event_id, "source": "/keys-test", "type": event_type,
                      "specversion": "1.0"}, data)
    except Redeliver:
        return False
    return True


def test_every_key_the_function_uses_is_named_in_the_keys_module(
    any_store: StateStore, standin: TaskCenterStandIn, sink: OutcomeSink, smn: SmnStandIn,
) -> None:
    store = Recording(any_store)
    app = build_components(settings_for(
        standin.url, K_SINK=sink.url, OUTCOME_SINK_ATTEMPTS="1", SWEEP_RATE_LIMIT="1000",
        SMN_ENDPOINT=smn.url, SMN_TOPIC_URN=TOPIC, SMN_MAX_MESSAGES_PER_HOUR="1",
        SDRS_BACKOFF_INITIAL="0.001", SDRS_BACKOFF_MAX="0.001"), state=store)
    try:
        standin.add_group("group-1", "G1")
        old_top, old_in_group = failed_task(EXPIRED), failed_task(EXPIRED)
        standin.add_job(old_top)
        standin.add_job(old_in_group, "group-1")
        standin.add_job(failed_task(FRESH))
        # A sweep: the lease and its fence, the budget, the index and the scope views,
        # the shared request rate (a throttle publishes it), an outcome the sink refuses
        # kept in the outbox.
        standin.inject("GET", r"/failure-jobs", Fault(429))
        sink.inject(Fault(503))
        _send(app, SWEEP, {}, "sweep-1")
        # An event: its idempotency record, the journal and its aliases; the outcome
        # left in the outbox is claimed and sent first.
        event = failed_task(EXPIRED)
        standin.add_job(event)
        assert _send(app, FAILED, event, "event-1")
        assert _send(app, FAILED, event, "event-1")  # a repeat: the first answer
        # Two permanent delete failures: an alert each, the second one over the budget.
        for n in (1, 2):
            refused = failed_task(EXPIRED)
            standin.add_job(refused)
            standin.inject("DELETE", re.escape(refused["resource_id"]), Fault(400))
            _send(app, FAILED, refused, f"refused-{n}")
    finally:
        app.reaper.client.close()

    assert standin.deletes(), "the run deleted nothing: it did not exercise the journal"
    named = {key: state_keys.declared(key) for key in store.seen}
    assert [key for key, name in named.items() if name is None] == []
    for key, ttl in store.ttls:
        fixed = state_keys.FIXED_TTLS.get(named[key] or "")
        assert fixed is None or ttl == fixed, (key, ttl, fixed)
    # The run reached every kind of key but the notice of due tasks (a weekly mail).
    # smn_notice needs a policy notice window; outbox_dropped a destination's 4xx
    # (tests/test_delivery.py counts those drops).
    expected = set(state_keys.NAMES) - {"smn_notice", "outbox_dropped"}
    assert expected - set(named.values()) == set()


@pytest.mark.parametrize(("key", "name"), [
    (state_keys.idempotency("/s\x1fid"), "idempotency"),
    (state_keys.journal("r-1"), "journal"),
    (state_keys.journal_alias("j-1"), "journal_alias"),
    (state_keys.budget("/s\x1fid"), "budget"),
    (state_keys.outbox_claim("0b6c"), "outbox_claim"),
    (state_keys.smn_failed(None), "smn_failed"),
    (state_keys.smn_sent(493_000), "smn_sent"),
    (state_keys.smn_notice("ab" * 32), "smn_notice"),
    (state_keys.index_bucket(493_000, 0xff80), "index"),
    (state_keys.INDEX_SCOPES, "index_scopes"),
    (state_keys.scope_view("-"), "scope_view"),
    (state_keys.rate_window(1_767_225_600), "rate_window"),
    (state_keys.LEASE, "lease"),
    (state_keys.FENCE, "fence"),
    (state_keys.OUTBOX, "outbox"),
    (state_keys.GROUPS_VIEW, "groups_view"),
    (state_keys.RATE_STATE, "rate_state"),
    (state_keys.SMN_SUPPRESSED, "smn_suppressed"),
    ("ix:job_id:ff80", None),  # an index key names its generation and its bucket
    ("ix:493000:ff8", None),
    ("idem:not-a-digest", None),
    ("lease:sweep:other", None),
    ("a key nobody declared", None),
])
def test_each_declared_key_is_told_apart(key: str, name: str | None) -> None:
    assert state_keys.declared(key) == name


def test_every_fixed_ttl_belongs_to_a_declared_key() -> None:
    assert set(state_keys.FIXED_TTLS) <= set(state_keys.NAMES)
    assert all(ttl > 0 for ttl in state_keys.FIXED_TTLS.values())
