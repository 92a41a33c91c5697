"""Servers that trickle or never stop: time to the answer against the deadline, peak RSS.

Three hostile task-center APIs (``standin.hostile``, in this process, on loopback):

* ``headers``: the status line, then one byte of a header every 0.2 s, never done;
* ``body``: whole headers announcing 100 MB, then one byte of the body every 0.2 s;
* ``large``: a 200 listing page, chunked, that never ends, as fast as it is read;

and, as the baseline, the stand-in with 1,000 expired tasks at the top level.

Against each, in their own processes and with ``SDRS_REQUEST_TIMEOUT=30`` (so no
per-read timeout ever fires: only the whole-request bound can end a request):

* ``failjob-reaper plan`` with ``SWEEP_DEADLINE`` D: wall time to its exit, the
  exit code, peak RSS (``ru_maxrss`` of the child);
* one job-failed event through ``functions-framework`` with ``EVENT_DEADLINE`` E: wall
  time to the answer, its status, the worker's peak RSS (VmHWM).

Before the bound, the first two never answered (killed at 120 s) and an endless page
took memory until the process died. Every wait here is bounded (six times the
deadline, then the process is killed and the row says so).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx

from bench._procs import MAIN, PY, ROOT, TOKEN, Function, clean_env, cloudevent, proc_status
from bench._procs import standin as standin_server
from bench._report import Result, Table, mib, ratio, say
from bench.overhead import expired_record
from standin.hostile import Hostile

PROJECT = "0605767f0a00d5762fe0c0148c8ba0d3"
KINDS = ("floor", "baseline", "headers", "body", "large")


@contextlib.contextmanager
def _api(kind: str) -> Iterator[tuple[str, str]]:
    """(URL, project id) of the API of this kind."""
    if kind == "baseline":
        with standin_server(bulk=1000, groups=0) as server:
            yield server.url, server.project_id or PROJECT
        return
    if kind == "floor":  # a closed port: connection refused at once (process start-up)
        with socket.create_server(("127.0.0.1", 0)) as closed:
            port = closed.getsockname()[1]
        yield f"http://127.0.0.1:{port}", PROJECT
        return
    with Hostile(kind, interval=0.2) as hostile:  # type: ignore[arg-type]
        yield hostile.url, PROJECT


def _env(api: tuple[str, str], **extra: str) -> dict[str, str]:
    url, project = api
    values = {"SDRS_ENDPOINT": url, "SDRS_PROJECT_ID": project, "SDRS_AUTH_TOKEN": TOKEN,
              "SDRS_REQUEST_TIMEOUT": "30", "SWEEP_RATE_LIMIT": "0",
              "SDRS_MAX_ATTEMPTS": "2", **extra}
    return clean_env(**values)


def _plan(api: tuple[str, str], deadline: float, **extra: str) -> dict[str, Any]:
    """``failjob-reaper plan`` in a child: seconds, exit code, peak RSS bytes."""
    env = _env(api, SWEEP_DEADLINE=f"{deadline:g}", **extra)
    started = time.perf_counter()
    child = subprocess.Popen([PY, "-m", "failjob_reaper", "plan", "--output", "json",
                              "--no-progress"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    limit = started + 6 * deadline
    killed = False
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > limit and not killed:
            child.kill()
            killed = True
        time.sleep(0.02)  # polling a child, bounded by the limit above
    child.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": time.perf_counter() - started, "exit": child.returncode,
            "killed": killed, "peak_rss": usage.ru_maxrss * 1024}


def _event(api: tuple[str, str], deadline: float, **extra: str) -> dict[str, Any]:
    env = _env(api, EVENT_DEADLINE=f"{deadline:g}", **extra)

    with Function(MAIN, "on_event", env) as function:
        function.wait_listening()
        worker = function.worker_pid()
        headers, body = cloudevent("sdrs.job.failed", expired_record())
        started = time.perf_counter()
        try:
            answer = httpx.post(function.url, headers=headers, content=body,
                                timeout=6 * deadline)
            status: int | str = answer.status_code
        except httpx.TimeoutException:
            status = "no answer"
        seconds = time.perf_counter() - started
        peak = proc_status(worker).get("VmHWM")
    return {"seconds": seconds, "status": status, "peak_rss": peak}


def run(quick: bool, smoke: bool = False) -> Result:
    sweep_deadline, event_deadline = (2.0, 1.0) if smoke else (5.0, 3.0) if quick else (
        10.0, 5.0)
    plans = Table(f"`failjob-reaper plan`, SWEEP_DEADLINE={sweep_deadline:g} s",
                  ["API", "exit", "wall s", "(wall - floor) / deadline", "peak RSS MiB",
                   "RSS vs baseline"])
    events = Table(f"one job-failed event, EVENT_DEADLINE={event_deadline:g} s",
                   ["API", "answer", "wall s", "wall / deadline", "worker peak RSS MiB",
                    "RSS vs baseline"])
    data: dict[str, Any] = {}
    for kind in KINDS:
        say(f"bounds: {kind}")
        # The floor: one refused connection, no backoff after it.
        extra = {"SDRS_MAX_ATTEMPTS": "1"} if kind == "floor" else {}
        with _api(kind) as api:
            plan = _plan(api, sweep_deadline, **extra)
            event = _event(api, event_deadline, **extra)
        data[kind] = {"plan": plan, "event": event}
    base_plan, base_event = data["baseline"]["plan"], data["baseline"]["event"]
    floor = data["floor"]["plan"]["seconds"]
    for kind in KINDS:
        plan, event = data[kind]["plan"], data[kind]["event"]
        plans.add(kind, "killed" if plan["killed"] else plan["exit"], plan["seconds"],
                  (plan["seconds"] - floor) / sweep_deadline, mib(plan["peak_rss"]),
                  ratio(plan["peak_rss"], base_plan["peak_rss"]))
        events.add(kind, event["status"], event["seconds"], event["seconds"] / event_deadline,
                   mib(event["peak_rss"]), ratio(event["peak_rss"], base_event["peak_rss"]))
    notes = [
        "SDRS_REQUEST_TIMEOUT=30: a per-read timeout never fires against a server that sends "
        "a byte every 0.2 s; only the whole-request bound (delivery.py) ends the request.",
        "large: an endless 200 page; reading stops at SDRS_MAX_RESPONSE_BYTES (4 MiB), "
        "SDRS.ResponseTooLarge, the listing is incomplete and nothing is deleted.",
        "baseline: the stand-in with 1,000 expired tasks at the top level (a full page); "
        "floor: a closed port (plan's process start-up and imports, the floor of its wall).",
        "plan's exit: 1 a problem (the guard, a partial listing), 3 the API unreachable.",
    ]
    return Result("bounds", "Bounds: trickling and endless answers", [plans, events], notes,
                  data)
