"""Processes of a benchmark: the stand-in, the sink and functions-framework, each its own.

Every process is started by this module, stopped by its own pid (terminate, then
kill after a bounded wait), and every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"
PY = sys.executable
TOKEN = "bench-token-7Qx2"  # the stand-in's credential for the benchmarks  # noqa: S105
AK = "BENCHAK0000000000001"
SK = "bench-sk-secret-0001"

# Settings of the function and of functions-framework that must not leak in from the caller.
_FF_VARS = {"FUNCTION_TARGET", "FUNCTION_SOURCE", "FUNCTION_SIGNATURE_TYPE", "HOST", "PORT",
            "DEBUG", "THREADS", "WORKERS", "FUNCTION_USE_ASGI", "CLOUD_RUN_TIMEOUT_SECONDS"}


def clean_env(**values: str) -> dict[str, str]:
    from failjob_reaper.settings import ENV_VARS

    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS and k not in _FF_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _read_line(stream: IO[str], timeout: float, what: str) -> str:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{what}: no ready line within {timeout:.0f}s")
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            line = stream.readline()
            if not line:
                raise RuntimeError(f"{what}: exited before it was ready")
            return line


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """Terminate one process we started (and kill it if it lingers); then its children."""
    if process.poll() is not None:
        return
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
    for child in children:  # gunicorn workers exit with their master; make sure
        with contextlib.suppress(psutil.Error):
            child.wait(timeout=5)
        with contextlib.suppress(psutil.Error):
            if child.is_running():
                child.kill()


class Server:
    """A server from ``bench._servers`` in its own process."""

    def __init__(self, process: subprocess.Popen[str], info: dict[str, Any]) -> None:
        self.process = process
        self.info = info
        self.url: str = info["url"]
        self.control: str | None = info.get("control")
        self.project_id: str | None = info.get("project_id")
        self._http = httpx.Client(timeout=30)

    def stats(self) -> dict[str, Any]:
        base = self.control or self.url
        result: dict[str, Any] = self._http.get(f"{base}/stats").raise_for_status().json()
        return result

    def reset_log(self) -> None:
        self._http.post(f"{self.control}/reset-log").raise_for_status()

    def reset_sink(self) -> None:
        self._http.post(f"{self.url}/reset").raise_for_status()

    def add_jobs(self, jobs: list[tuple[dict[str, Any], str | None]],
                 groups: list[str] | None = None) -> None:
        body = json.dumps({"groups": groups or [], "jobs": jobs})
        self._http.post(f"{self.control}/jobs", content=body).raise_for_status()

    def close(self) -> None:
        self._http.close()
        stop_process(self.process)


@contextlib.contextmanager
def server(kind: str, *args: str, timeout: float = 120.0) -> Iterator[Server]:
    process = subprocess.Popen(
        [PY, "-m", "bench._servers", kind, *args], cwd=ROOT, env=clean_env(),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(_read_line(process.stdout, timeout, f"{kind} server"))
        srv = Server(process, info)
    except BaseException:
        stop_process(process)
        raise
    try:
        yield srv
    finally:
        srv.close()


def standin(*, bulk: int = 0, groups: int = 10, fresh: int = 0, latency: float = 0.0,
            aksk: bool = True, throttle: float = 0.0) -> contextlib.AbstractContextManager[Server]:
    """The stand-in, accepting the bench token (and AK/SK signatures when ``aksk``);
    ``throttle``: the gateway's limit in requests/s (429 APIG.0308 beyond it), 0: off."""
    args = ["--token", TOKEN, "--bulk", str(bulk), "--groups", str(groups),
            "--fresh", str(fresh), "--latency", str(latency), "--throttle", str(throttle)]
    if aksk:
        args += ["--ak", AK, "--sk", SK]
    return server("standin", *args)


def sink() -> contextlib.AbstractContextManager[Server]:
    return server("sink")


def runtime_python() -> str:
    """A venv with requirements.txt only, as the container image has: no dev tools.

    It matters for start-up: with `rich` installed (schemathesis brings it into the dev
    venv) `import httpx` also imports httpx's own command line, rich and pygments.
    Built once under bench/results/ (gitignored) and reused.
    """
    venv = ROOT / "bench" / "results" / "runtime-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".requirements"
    wanted = (ROOT / "requirements.txt").read_text()
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                       timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", "-r", str(ROOT / "requirements.txt")],
                       check=True, timeout=900)
        stamp.write_text(wanted)
    return str(python)


def ff_command(source: Path, target: str, port: int, python: str = PY) -> list[str]:
    script = Path(python).parent / "functions-framework"
    head = [str(script)] if script.exists() else [python, "-m", "functions_framework"]
    return [*head, "--source", str(source), "--target", target, "--signature-type",
            "cloudevent", "--host", "127.0.0.1", "--port", str(port)]


class Function:
    """``functions-framework`` serving one cloudevent target in its own process."""

    def __init__(self, source: Path, target: str, env: dict[str, str],
                 stdout: int | IO[bytes] | None = subprocess.DEVNULL, cwd: Path = ROOT,
                 python: str = PY) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            ff_command(source, target, self.port, python), cwd=cwd, env=env,
            stdout=stdout, stderr=self._stderr,
        )

    def stderr_tail(self, n: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")[-n:]

    def wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"functions-framework exited: {self.stderr_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("functions-framework did not listen") from None
                time.sleep(0.01)  # waiting for the port, bounded by the deadline

    def worker_pid(self, timeout: float = 30.0) -> int:
        """The gunicorn worker: the process that runs the function's code."""
        deadline = time.monotonic() + timeout
        while True:
            children = psutil.Process(self.process.pid).children()
            if children:
                return int(children[0].pid)
            if time.monotonic() > deadline:
                return self.process.pid  # no gunicorn worker: the framework serves in-process
            time.sleep(0.02)  # bounded

    def stop(self) -> None:
        stop_process(self.process)
        self._stderr.close()

    def __enter__(self) -> Function:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (bytes) from /proc/PID/status: exact, no sampling."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def cloudevent(event_type: str, data: Any, *, source: str = "/bench",
               event_id: str | None = None) -> tuple[dict[str, str], bytes]:
    """A binary-mode CloudEvent request (headers, body)."""
    attributes = {"type": event_type, "source": source, "id": event_id or str(uuid.uuid4()),
                  "datacontenttype": "application/json"}
    headers, body = to_binary(CloudEvent(attributes, data))
    return dict(headers), body if isinstance(body, bytes) else str(body).encode()


HELLO_SOURCE = '''\
"""Hello world under functions-framework: the floor of the framework itself."""
import functions_framework


@functions_framework.cloud_event
def hello(event):
    return None
'''


_FLOOR_TEMPLATE = '''\
"""Hello world plus what the design card requires before the first answer: the floor.

pydantic-settings with one BaseSettings read from the environment, and httpx with
one Client, built as the product builds its clients for a plain-http URL (tls.py:
no CA bundle is loaded for a URL that never does a handshake).
"""
{pause}import ssl

import functions_framework
import httpx
from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    sdrs_endpoint: str
    sdrs_project_id: str


settings = Settings()
client = httpx.Client(base_url=settings.sdrs_endpoint,
                      verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
{resume}

@functions_framework.cloud_event
def hello(event):
    return None
'''
FLOOR_SOURCE = _FLOOR_TEMPLATE.format(pause="", resume="")
FLOOR_GC_PAUSED_SOURCE = _FLOOR_TEMPLATE.format(
    pause="import gc\n\ngc.disable()  # as main.py does while it builds the app\n",
    resume="gc.freeze()\ngc.enable()\n",
)
"""The floor started the way main.py starts the product: no garbage collection while it
imports and builds, then ``gc.freeze()``."""


@contextlib.contextmanager
def _function_source(prefix: str, text: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        path = Path(tmp) / "main.py"
        path.write_text(text)
        yield path


def hello_source() -> contextlib.AbstractContextManager[Path]:
    return _function_source("bench-hello-", HELLO_SOURCE)


def floor_source(*, gc_paused: bool = False) -> contextlib.AbstractContextManager[Path]:
    """The floor function: target ``hello``, needs SDRS_ENDPOINT and SDRS_PROJECT_ID in
    its environment; ``gc_paused``: FLOOR_GC_PAUSED_SOURCE."""
    return _function_source("bench-floor-",
                            FLOOR_GC_PAUSED_SOURCE if gc_paused else FLOOR_SOURCE)


def function_env(standin_srv: Server, *, sink_url: str | None, **extra: str) -> dict[str, str]:
    values = {
        "SDRS_ENDPOINT": standin_srv.url,
        "SDRS_PROJECT_ID": standin_srv.project_id or "",
        "SDRS_AUTH_TOKEN": TOKEN,
    }
    if sink_url:
        values["K_SINK"] = sink_url
    values.update(extra)
    return clean_env(**values)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds consumed so far by each process."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
            out[name] = float(times.user + times.system)
        except psutil.Error:
            out[name] = float("nan")
    return out
