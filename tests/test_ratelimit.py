"""The adaptive rate: properties of the controller on a simulated clock against the
stand-in's own throttle (also on that clock), then the threaded limiter around it."""

from __future__ import annotations

import heapq
import json
import math
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failjob_reaper.sdrs._errors import announced_rate, throttle_of
from failjob_reaper.sdrs._pacing import STATE_KEY, AdaptiveLimiter, limiter_for
from failjob_reaper.sdrs._ratelimit import (
    BETA,
    LIMIT_TTL,
    RAMP,
    RateController,
    TokenBucket,
)
from failjob_reaper.state import MemoryStore
from standin import Throttle


def gateway_429(limit: str = "limit:20,time:1 second") -> httpx.Response:
    body = {"error_code": "APIG.0308",
            "error_msg": f"The throttling threshold has been reached: policy user over "
                         f"ratelimit,{limit}"}
    return httpx.Response(429, content=json.dumps(body).encode())


# -- what a throttle says ------------------------------------------------------------------


@pytest.mark.parametrize(("message", "rate"), [
    ("policy user over ratelimit,limit:20,time:1 second", 20.0),
    ("policy user over ratelimit, limit:100, time:1 minute", 100 / 60),
    ("limit:5,time:2 seconds", 2.5),
    ("limit:3600,time:1 hour", 1.0),
    ("limit:7", 7.0),
    ("no numbers here", None),
    ("limit:5,time:1 fortnight", None),
    ("limit:0,time:1 second", None),
])
def test_the_announced_limit_is_read_as_requests_per_second(
    message: str, rate: float | None
) -> None:
    got = announced_rate(message)
    assert got == pytest.approx(rate) if rate is not None else got is None


def test_a_throttle_is_a_429_or_the_gateways_code_under_any_status() -> None:
    assert throttle_of(gateway_429()) == (True, 20.0)
    assert throttle_of(httpx.Response(429, content=b"not json")) == (True, None)
    coded = httpx.Response(403, content=json.dumps(
        {"error_code": "APIG.0308", "error_msg": "limit:4,time:1 second"}).encode())
    assert throttle_of(coded) == (True, 4.0)
    assert throttle_of(httpx.Response(503, content=b'{"error": {"code": "x"}}')) == (
        False, None)
    assert throttle_of(httpx.Response(204)) == (False, None)


# -- the controller on a simulated clock -------------------------------------------------------


@dataclass
class Run:
    ok: list[float] = field(default_factory=list)
    throttled: list[float] = field(default_factory=list)
    rates: list[tuple[float, float]] = field(default_factory=list)

    def share(self, since: float, until: float = math.inf) -> tuple[float, float]:
        """(goodput in requests/s, share throttled) in [since, until)."""
        ok = sum(1 for t in self.ok if since <= t < until)
        bad = sum(1 for t in self.throttled if since <= t < until)
        span = min(until, self.rates[-1][0]) - since
        return ok / span, bad / max(1, ok + bad)


def simulate(
    controller: RateController,
    server_rate: float,
    *,
    announce: bool,
    seconds: float,
    latency: float = 0.02,
    lift_at: float = math.inf,
) -> Run:
    """An open-loop client pacing at ``controller``'s rate against ``standin.Throttle``
    (burst = its rate), answers arriving ``latency`` later; from ``lift_at`` on the server
    admits everything."""
    now = [0.0]
    server = Throttle(server_rate, clock=lambda: now[0])
    bucket = TokenBucket(stamp=0.0)
    in_flight: list[tuple[float, bool, int]] = []
    run = Run()
    t = 0.0
    while t < seconds:
        while in_flight and in_flight[0][0] <= t:
            at, admitted, ticket = heapq.heappop(in_flight)
            if admitted:
                controller.on_success(at)
            else:
                controller.on_throttle(at, server_rate if announce else None, ticket)
                bucket.drain()
        rate = controller.current(t)
        run.rates.append((t, rate))
        wait = bucket.take(t, rate)
        if wait > 0:
            t = min(t + wait, in_flight[0][0]) if in_flight else t + wait
            continue
        now[0] = t
        admitted = t >= lift_at or server.admit()
        (run.ok if admitted else run.throttled).append(t)
        heapq.heappush(in_flight, (t + latency, admitted, controller.generation))
    return run


events = st.lists(
    st.tuples(
        st.floats(0.0, 30.0),                                  # time to the next answer
        st.sampled_from(["ok", "throttle", "stale-throttle"]),
        st.one_of(st.none(), st.floats(0.01, 500.0)),          # announced limit
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(ceiling=st.floats(0.1, 1000.0), answers=events)
def test_the_rate_never_exceeds_the_ceiling_nor_a_standing_announced_limit(
    ceiling: float, answers: list[tuple[float, str, float | None]]
) -> None:
    controller = RateController(ceiling)
    now = 0.0
    announced: tuple[float, float] | None = None  # (limit, when)
    for dt, kind, limit in answers:
        now += dt
        if kind == "ok":
            controller.on_success(now)
        else:
            ticket = controller.generation - (1 if kind == "stale-throttle" else 0)
            controller.on_throttle(now, limit, ticket)
            if limit is not None:
                announced = (limit, now)
        for later in (now, now + dt / 2):
            rate = controller.current(later)
            assert 0 < rate <= ceiling
            if announced is not None and later < announced[1] + LIMIT_TTL:
                assert rate <= announced[0]


@settings(max_examples=25, deadline=None)
@given(server_rate=st.floats(2.0, 150.0), ceiling=st.floats(1.0, 1000.0),
       announce=st.booleans(), latency=st.floats(0.0, 0.1))
def test_it_converges_to_a_fixed_server_limit(
    server_rate: float, ceiling: float, announce: bool, latency: float
) -> None:
    run = simulate(RateController(ceiling), server_rate, announce=announce, seconds=120,
                   latency=latency)
    goodput, throttled = run.share(since=60)
    allowed = min(server_rate, ceiling)
    assert goodput >= 0.9 * allowed
    assert goodput <= allowed * 1.05 + 2 / 60  # the burst, a couple of requests
    # With the limit announced the cap holds it; without, AIMD probes: one throttle per
    # cycle of (1 - BETA) / RAMP = 6 s, about 5 x server_rate requests.
    assert throttled <= (0.03 if announce else max(0.03, 0.3 / server_rate))


@settings(max_examples=15, deadline=None)
@given(server_rate=st.floats(2.0, 50.0), ceiling=st.floats(60.0, 500.0),
       announce=st.booleans())
def test_it_recovers_once_throttling_stops(
    server_rate: float, ceiling: float, announce: bool
) -> None:
    lift = 30.0
    # Back to the ceiling: what an announced limit holds back, then the linear part
    # (1 - BETA) / RAMP, then 5 %/s growth from the last decrease's rate to the ceiling.
    bound = ((LIMIT_TTL if announce else 0.0) + (1 - BETA) / RAMP
             + math.log(ceiling / (BETA * server_rate)) / RAMP + 5)
    controller = RateController(ceiling)
    run = simulate(controller, server_rate, announce=announce, seconds=lift + bound,
                   lift_at=lift)
    assert run.share(since=lift / 2, until=lift)[0] <= server_rate * 1.1
    assert controller.current(lift + bound) == pytest.approx(ceiling)
    assert run.throttled and max(run.throttled) < lift


# -- the limiter: threads and the state store -----------------------------------------------


def test_zero_is_no_client_side_limit() -> None:
    assert limiter_for(0, MemoryStore()) is None
    assert isinstance(limiter_for(50, MemoryStore()), AdaptiveLimiter)


def test_a_single_event_goes_ahead_of_a_sweeps_waiting_workers() -> None:
    limiter = AdaptiveLimiter(20.0)  # 50 ms slots
    bulk = limiter.bulk()
    order: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sweep_worker() -> None:
        while not stop.is_set():
            bulk.acquire()
            with lock:
                order.append("sweep")

    workers = [threading.Thread(target=sweep_worker) for _ in range(8)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 10
    while len(order) < 10 and time.monotonic() < deadline:  # the sweep is queued up
        time.sleep(0.01)
    with lock:
        order.append("event arrives")
    limiter.acquire()
    with lock:
        order.append("event")
    stop.set()
    for worker in workers:
        worker.join(10)

    arrived, served = order.index("event arrives"), order.index("event")
    # At most the slot already due goes first; eight waiting workers would be eight.
    assert served - arrived <= 2


def test_a_throttle_with_a_limit_slows_every_request_of_the_process() -> None:
    limiter = AdaptiveLimiter(50.0)
    ticket = limiter.acquire()
    limiter.record(ticket, gateway_429("limit:5,time:1 second"))
    assert limiter.rate == pytest.approx(5.0)
    assert limiter.throttles == 1
    started = time.monotonic()
    for _ in range(3):
        limiter.acquire()
    assert time.monotonic() - started >= 2 / 5 * 0.9  # drained: three slots 0.2 s apart


def test_another_instance_adopts_a_throttle_through_the_state_store() -> None:
    store = MemoryStore()
    first, second = AdaptiveLimiter(50.0, store=store), AdaptiveLimiter(50.0, store=store)
    second.acquire()  # has read the (empty) shared state once
    first.record(first.acquire(), gateway_429("limit:8,time:1 second"))
    assert store.get(STATE_KEY) is not None

    time.sleep(1.05)  # the sync interval, so the second reads the store again
    second.acquire()
    fresh = AdaptiveLimiter(50.0, store=store)
    fresh.acquire()
    assert second.rate == pytest.approx(8.0)
    assert fresh.rate == pytest.approx(8.0)


class SharedStore:
    """A store other instances could share (any non-memory backend): delegates to a
    MemoryStore, which this test uses as the shared one."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_shared_store_bounds_the_deployments_requests_per_second() -> None:
    shared = MemoryStore()
    # Three instances, each allowed the whole ceiling on its own; together they may not
    # exceed it in any wall-clock second (the shared per-second counter).
    limiters = [AdaptiveLimiter(10.0, store=SharedStore(shared)) for _ in range(3)]  # type: ignore[arg-type]
    starts: list[float] = []
    lock = threading.Lock()

    def instance(limiter: AdaptiveLimiter) -> None:
        for _ in range(10):
            limiter.acquire()
            with lock:
                starts.append(time.time())

    threads = [threading.Thread(target=instance, args=(lim,)) for lim in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    per_second: dict[int, int] = {}
    for start in starts:
        per_second[int(start)] = per_second.get(int(start), 0) + 1
    assert len(starts) == 30
    assert max(per_second.values()) <= 10
