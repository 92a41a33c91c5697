"""The loopback servers of the benchmarks, each in its own process.

``python -m bench._servers standin ...`` serves ``standin.TaskCenterStandIn``
built exactly as ``python -m standin`` builds it (same class, same
``bulk_world``), plus a control port the bench uses to read request counts and
to add tasks between timed calls: ``standin/`` has no HTTP control API and must
not be changed, and the benchmarks must not share a GIL with the server.

``python -m bench._servers sink`` serves ``standin.OutcomeSink`` (same parsing
of every CloudEvent), counting events by type instead of keeping them, so that
long runs do not grow the sink, with ``GET /stats``.

Both print one JSON line with their URLs once they are serving and stop on
SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections import Counter
from datetime import UTC, datetime
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from standin import OutcomeSink, TaskCenterStandIn, Throttle, bulk_rows
from standin._http import Response, ServerBase, error_body, json_response
from standin.sample_data import DEFAULT_PROJECT_ID


class StandInControl(ServerBase):
    """``GET /stats``, ``POST /jobs`` ({"groups": [id...], "jobs": [[record, group|null]...]}),
    ``POST /reset-log``: the bench's side door into a stand-in running in this process."""

    def __init__(self, standin: TaskCenterStandIn) -> None:
        super().__init__("127.0.0.1", 0)
        self.standin = standin

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        self.log.clear()  # the control port's own log would only grow
        path = urlsplit(target).path
        if method == "GET" and path == "/stats":
            by_method, by_status = self.standin.request_counts()
            return json_response(200, {
                "jobs": self.standin.job_count(),
                "requests": sum(by_method.values()),
                "by_method": by_method,
                "by_status": by_status,
            })
        if method == "POST" and path == "/jobs":
            payload = json.loads(body)
            for group_id in payload.get("groups", []):
                self.standin.add_group(group_id)
            self.standin.add_jobs([(record, group) for record, group in payload.get("jobs", [])])
            return Response(204)
        if method == "POST" and path == "/reset-log":
            self.standin.reset_log()
            return Response(204)
        return Response(404, error_body(404, "BENCH.0404", "no such control call"))


class CountingSink(OutcomeSink):
    """``OutcomeSink`` (same CloudEvent parsing, same 202) that counts instead of keeping."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.last_sweep: Any = None

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        self.log.clear()  # the request log would only grow
        if method == "GET" and urlsplit(target).path == "/stats":
            with self._changed:
                return json_response(200, {"counts": dict(self.counts),
                                           "last_sweep": self.last_sweep})
        if method == "POST" and urlsplit(target).path == "/reset":
            with self._changed:
                self.counts.clear()
                self.last_sweep = None
            return Response(204)
        # The condition's lock is reentrant: parse and count as one step.
        with self._changed:
            response = super().dispatch(method, target, headers, body)
            if response.status == 202 and self._events:
                event = self._events.pop()
                self.counts[str(event["type"])] += 1
                if str(event["type"]).endswith(".sweep_completed"):
                    data = event.data
                    self.last_sweep = json.loads(data) if isinstance(data, bytes | str) else data
        return response


def _serve_until_terminated(ready: dict[str, Any]) -> None:
    stop = threading.Event()

    def _terminate(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _terminate)
    print(json.dumps(ready), flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._servers")
    kinds = parser.add_subparsers(dest="kind", required=True)
    si = kinds.add_parser("standin")
    si.add_argument("--project-id", default=DEFAULT_PROJECT_ID)
    si.add_argument("--token")
    si.add_argument("--ak")
    si.add_argument("--sk")
    si.add_argument("--bulk", type=int, default=0, help="expired tasks (bulk_world, seed 0)")
    si.add_argument("--groups", type=int, default=10)
    si.add_argument("--fresh", type=int, default=0,
                    help="not-yet-expired tasks at the top level (bulk_world, seed 1)")
    si.add_argument("--latency", type=float, default=0.0)
    si.add_argument("--throttle", type=float, default=0.0,
                    help="gateway throttling: a token bucket of this many requests/s (0: off)")
    si.add_argument("--burst", type=float, default=None, help="its burst (default: the rate)")
    si.add_argument("--drip", type=float, default=0.0,
                    help="every answer's body one byte every this many seconds")
    si.add_argument("--page-mb", type=float, default=0.0,
                    help="every failure-job listing page padded to this many MB")
    kinds.add_parser("sink")
    args = parser.parse_args(argv)

    if args.kind == "sink":
        with CountingSink() as sink:
            _serve_until_terminated({"url": sink.url})
        return 0

    standin = TaskCenterStandIn(
        project_id=args.project_id,
        token=args.token,
        credentials={args.ak: args.sk} if args.ak else None,
        latency=args.latency,
        drip=args.drip,
        page_bytes=int(args.page_mb * 1024 * 1024),
        log_keep=10_000,  # /stats counts every request; the log need not keep them
    )
    if args.throttle > 0:
        standin.throttle = Throttle(args.throttle, burst=args.burst)
    now = datetime.now(UTC)
    if args.bulk:
        standin.load_rows(*bulk_rows(args.bulk, args.groups, now))
    if args.fresh:
        standin.load_rows(*bulk_rows(args.fresh, 0, now, expired=False, seed=1))
    control = StandInControl(standin)
    with standin:
        control.start_server()
        try:
            _serve_until_terminated({"url": standin.url, "control": control.url,
                                     "project_id": args.project_id})
        finally:
            control.stop_server()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
