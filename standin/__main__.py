"""``python -m standin``: serve the task-center stand-in until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import UTC, datetime
from types import FrameType

from ._throttle import Throttle
from .sample_data import DEFAULT_PROJECT_ID, bulk_rows, sample_world
from .server import TaskCenterStandIn


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--project-id", default=DEFAULT_PROJECT_ID)
    parser.add_argument("--token", help="require this X-Auth-Token")
    parser.add_argument("--ak", help="accept AK/SK signatures by this access key (with --sk)")
    parser.add_argument("--sk", help="the secret key of --ak")
    parser.add_argument("--sample", action="store_true", help="load the sample world")
    parser.add_argument("--bulk", type=int, default=0, metavar="N", help="load N bulk failures")
    parser.add_argument("--groups", type=int, default=10, help="protection groups for --bulk")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to answers")
    parser.add_argument("--throttle", type=float, default=0.0, metavar="R",
                        help="the gateway's rate limit: 429 APIG.0308 beyond R requests/s")
    parser.add_argument("--drip", type=float, default=0.0, metavar="SECONDS",
                        help="a server that trickles: every answer's body one byte every "
                             "SECONDS after its headers")
    parser.add_argument("--page-mb", type=float, default=0.0, metavar="N",
                        help="an oversized page: every failure-job listing page padded to N MB")
    parser.add_argument("--log-keep", type=int, default=100_000, metavar="N",
                        help="requests kept in the log (its counts cover all)")
    parser.add_argument("--id-field", default="resource_id")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if bool(args.ak) != bool(args.sk):
        _parser().error("--ak and --sk go together")
    standin = TaskCenterStandIn(
        project_id=args.project_id,
        token=args.token,
        credentials={args.ak: args.sk} if args.ak else None,
        id_field=args.id_field,
        latency=args.latency,
        drip=args.drip,
        page_bytes=int(args.page_mb * 1024 * 1024),
        log_keep=args.log_keep,
        host=args.host,
        port=args.port,
    )
    if args.throttle > 0:
        standin.throttle = Throttle(args.throttle)
    now = datetime.now(UTC)
    if args.sample:
        standin.load(*sample_world(now, project_id=args.project_id))
    if args.bulk:
        standin.load_rows(*bulk_rows(args.bulk, args.groups, now))

    stop = threading.Event()

    def _terminate(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _terminate)
    with standin:
        print(f"{standin.url} {args.project_id}", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
