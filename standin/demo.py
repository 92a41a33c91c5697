"""``make run``: the function under functions-framework against the stand-in.

Starts the task-center stand-in with the sample world, starts
``functions-framework --target on_event`` wired to it (outcomes printed as
JSON lines, since no K_SINK is set), sends a few sample events (CTS traces as
EventGrid delivers them among them, bare and in an envelope), then keeps
both serving until Ctrl-C. ``--once`` stops after the samples (used by tests).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import httpx
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from .sample_data import DEFAULT_PROJECT_ID, cts_trace, eventgrid_cloudtrace, sample_world
from .server import TaskCenterStandIn

ROOT = Path(__file__).resolve().parent.parent
POLICY = Path(__file__).resolve().parent / "demo_policy.yaml"
TOKEN = "local-demo-token"  # noqa: S105 - the stand-in's demo credential


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standin.demo", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    parser.add_argument("--standin-port", type=int, default=8089)
    parser.add_argument("--once", action="store_true", help="exit after the sample events")
    args = parser.parse_args(argv)
    # SIGTERM (a supervisor, `timeout`) stops it like Ctrl-C: the function process goes too.
    signal.signal(signal.SIGTERM, _interrupt)

    standin = TaskCenterStandIn(project_id=DEFAULT_PROJECT_ID, token=TOKEN,
                                port=args.standin_port)
    groups, jobs = sample_world(datetime.now(UTC))
    standin.load(groups, jobs)
    with standin:
        print(f"stand-in: {standin.url} (project {DEFAULT_PROJECT_ID}, {len(jobs)} failed tasks "
              f"in {len(groups)} groups and the top level)", flush=True)
        env = {
            **os.environ,
            "SDRS_ENDPOINT": standin.url,
            "SDRS_PROJECT_ID": DEFAULT_PROJECT_ID,
            "SDRS_AUTH_TOKEN": TOKEN,
            "RETENTION_POLICY_FILE": str(POLICY),
            "SWEEP_EMIT_RETAINED": "true",
        }
        env.pop("K_SINK", None)
        # A person reads this terminal: text log lines between the JSON outcomes.
        env.setdefault("LOG_FORMAT", "text")
        command = [
            sys.executable, "-m", "functions_framework", "--source", str(ROOT / "main.py"),
            "--target", "on_event", "--signature-type", "cloudevent",
            "--host", "127.0.0.1", "--port", str(args.port),
        ]
        function = subprocess.Popen(command, env=env, cwd=ROOT)  # noqa: S603 - our own argv
        try:
            url = f"http://127.0.0.1:{args.port}/"
            _wait_for_port(args.port, function)
            print(f"function: {url} (on_event); outcomes follow, one JSON line each\n",
                  flush=True)
            _send_samples(url, jobs)
            if args.once:
                return 0
            _print_help(url)
            function.wait()
        except KeyboardInterrupt:
            pass
        finally:
            function.terminate()
            function.wait(timeout=10)
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _send_samples(url: str, jobs: list[tuple[dict[str, object], str | None]]) -> None:
    by_name = {record["resource_name"]: record for record, _ in jobs}
    samples: list[tuple[str, str, object]] = [
        ("an expired task inside a protection group", "sdrs.job.failed", by_name["web-01"]),
        ("a fresh task", "sdrs.job.failed", by_name["web-02"]),
        ("an expired task on hold (prod-*)", "sdrs.job.failed", by_name["prod-db-01"]),
        ("an expiry event naming a task by id", "sdrs.failurejob.expired",
         {"failure_job_id": by_name["etl-rep-04"]["resource_id"]}),
        ("an id that tries to escape the URL path", "sdrs.failurejob.expired",
         {"failure_job_id": "../../v1/other-project"}),
    ]
    now = datetime.now(UTC)
    trace = cts_trace(by_name["web-data-rep"]["resource_id"], now=now,
                      trace_name="expandReplicationPair", resource_type="replication",
                      resource_name="web-data-rep")
    cloudtrace = eventgrid_cloudtrace(trace)
    samples.append(("a CTS trace of an SDRS operation, as EventGrid delivers it (HC.SDRS)",
                    cloudtrace["type"], cloudtrace["data"]))
    samples.append(("a CTS trace of another service (VPC): acknowledged, rejected",
                    "VPC:CloudTrace:ApiCall",
                    cts_trace("vpc-1", now=now, service_type="VPC", trace_name="deleteVpc")))
    samples.append(("a dry-run sweep of the whole project", "sdrs.failurejob.sweep",
                    {"dry_run": True}))
    with httpx.Client(timeout=60) as client:
        for title, event_type, data in samples:
            print(f"--> {event_type}: {title}", flush=True)
            event = CloudEvent({"type": event_type, "source": "/make/run",
                                "id": str(uuid.uuid4())}, data)
            headers, body = to_binary(event)
            response = client.post(url, headers=headers, content=body)
            print(f"<-- HTTP {response.status_code}\n", flush=True)
        envelope = {"events": [eventgrid_cloudtrace(
            cts_trace(by_name["drill-2023-q4"]["resource_id"], now=datetime.now(UTC),
                      resource_type="drill", trace_name="deleteDisasterRecoveryDrill",
                      resource_name="drill-2023-q4"))]}
        print("--> an EventGrid envelope {\"events\": [...]} with one SDRS trace "
              "(drill-2023-q4)",
              flush=True)
        response = client.post(url, json=envelope)
        print(f"<-- HTTP {response.status_code} {response.text}\n", flush=True)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"functions-framework exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # polling for a port to open, bounded by the deadline
    raise SystemExit(f"functions-framework did not listen on port {port} within 30 s")


def _print_help(url: str) -> None:
    print(
        "Serving until Ctrl-C. Send your own event, for example:\n"
        f"  curl -i {url} -H 'ce-specversion: 1.0' -H 'ce-type: sdrs.failurejob.expired' \\\n"
        "       -H 'ce-source: /me' -H 'ce-id: 1' -H 'content-type: application/json' \\\n"
        "       -d '{\"failure_job_id\": \"<a resource_id from the sweep above>\"}'\n",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
