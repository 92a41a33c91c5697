"""Benchmarks of failjob-reaper: ``python -m bench [--quick] [--only NAME ...] [--json [FILE]]``.

Every benchmark measures a baseline in the same run and reports ratios against
it as well as absolute numbers: the machine is shared and noisy, ratios travel
better than seconds. Everything runs on loopback, every loop is bounded, and
the function under test always runs in its own process (``functions-framework``
as in production), never sharing a GIL with the servers it talks to.
``--smoke`` runs the tiniest form for ``tests/test_bench_smoke.py`` (``run(quick,
smoke=True)`` where a benchmark has one, else ``--quick``): the numbers mean nothing.

Benchmarks (``--only`` names):

* ``sweep``      - a timer-triggered sweep through the real function vs the
                   official SDK's sequential loop and the ideal bound;
* ``coldstart``  - functions-framework start to first answered event, vs a
                   hello-world function; ``-X importtime`` of ``main``;
* ``overhead``   - one job-failed event through the function vs the same three
                   HTTP calls made directly (the floor);
* ``throughput`` - events/s with N concurrent clients, vs hello world;
* ``memory``     - RSS of the function process over many cheap events, vs hello world;
* ``state``      - the extra latency per event that ``STATE_URL=redis://`` adds over
                   ``memory://``, and Redis memory per 10,000 decided events;
* ``ratelimit``  - a sweep against the stand-in throttling like the API gateway (R
                   requests/s), adaptive vs the limiter off, the fixed limiter before
                   and the SDK loop; client CPU per task, httpx's transport vs the old one;
* ``lookup``     - calls and latency of one event against the number of groups, cold
                   and warm lookup index, vs before;
* ``bounds``     - APIs that trickle their headers or body, or send a page without end:
                   ``plan`` and one event, time to the answer against the deadline and
                   peak RSS, vs a healthy stand-in.
* ``backlog``    - ``plan`` and ``sweep --dry-run`` over 10,000 to 1,000,000 tasks (wall, API
                   calls, peak RSS, vs the floor calls / R), real sweeps against the
                   gateway's rate, Redis memory per 100,000 indexed tasks, misbehaving
                   servers (``python -m bench.backlog --sizes ...`` picks the sizes).
* ``decide``     - ``policy.decide`` per listed record (CPU, in process) over 100,000 bulk
                   records, expired and fresh, two policies, vs ``json.loads`` of the same
                   record bodies (``python -m bench.decide -n N`` picks the count).
"""

BENCHMARKS = ("sweep", "coldstart", "overhead", "throughput", "memory", "state", "ratelimit",
              "lookup", "bounds", "backlog", "decide")
