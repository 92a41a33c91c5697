"""Hostile input at the edges (issue 20): a ``STATE_URL`` the Redis client would refuse
later, ``Idempotency-Key`` values that are no key, events past their size bound,
``K_CE_OVERRIDES`` that would rewrite an outcome, and what the server in front of the
app (gunicorn, started by functions-framework) answers itself.

Each input goes through the production entry path: functions-framework's own start,
``main.handler`` under FunctionGraph's markers, the installed ``failjob-reaper`` command
run from outside the repository, the Flask app functions-framework builds."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from failjob_reaper.errors import ConfigError
from failjob_reaper.http_api._idempotency import KEY_RULE
from failjob_reaper.settings import ENV_VARS, load_settings
from standin import OutcomeSink, TaskCenterStandIn
from standin.redis_server import RedisServer
from tests.conftest import (
    EXPIRED,
    PROJECT,
    ROOT,
    TOKEN,
    Function,
    FunctionFactory,
    failed_task,
)
from tests.test_functiongraph import API_TOKEN as FG_TOKEN
from tests.test_functiongraph import FunctionGraph, apig_event, body_of
from tests.test_functiongraph import functiongraph as functiongraph  # the fixture
from tests.test_http_api import API_TOKEN as HTTP_TOKEN
from tests.test_http_api import call, error_of

PASSWORD = "Pa55-w0rd-in-the-url"
COMMAND = Path(sys.executable).parent / "failjob-reaper"
CONFIG_LINE = "failjob-reaper: configuration error: STATE_URL: "


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ENV_VARS and k not in ("FUNCTION_TARGET", "PYTHONPATH", "LOG_FORMAT")}
    env.update(values)
    return env


# -- STATE_URL ------------------------------------------------------------------------------

BAD_STATE_URLS: list[tuple[str, str]] = [
    # (URL, what the one line must name)
    (f"redis://:{PASSWORD}@127.0.0.1:6379/0?foo=bar", "unknown option 'foo'"),
    ("redis://127.0.0.1:6379/0?ssl_cert_reqs=none", "'ssl_cert_reqs' (only with rediss://)"),
    ("redis://127.0.0.1:6379/0?ssl_check_hostname=false", "'ssl_check_hostname' (only with"),
    ("redis://127.0.0.1/0?health_check_interval=x", "option health_check_interval: must be"),
    ("redis://127.0.0.1/0?health_check_interval=-5", "option health_check_interval: must be"),
    (f"redis://:{PASSWORD}@127.0.0.1/0?socket_timeout=abc", "option socket_timeout: must be"),
    ("redis://127.0.0.1/0?socket_timeout=-1", "option socket_timeout: must be"),
    ("redis://127.0.0.1/0?socket_timeout=nan", "option socket_timeout: must be"),
    ("redis://127.0.0.1/0?socket_timeout=1e308", "option socket_timeout: must be"),
    ("redis://127.0.0.1/0?socket_timeout=inf", "option socket_timeout: must be"),
    ("redis://127.0.0.1/0?socket_timeout=0", "option socket_timeout: must be"),
    ("redis://127.0.0.1/0?socket_timeout=", "option socket_timeout: must be"),
    ("redis://127.0.0.1/0?socket_connect_timeout=soon", "option socket_connect_timeout:"),
    ("redis://127.0.0.1/0?socket_timeout=1&socket_timeout=2", "socket_timeout is given twice"),
    ("redis://127.0.0.1/0?socket_keepalive=banana", "option socket_keepalive: must be true"),
    ("redis://127.0.0.1/0?max_connections=0", "option max_connections: must be"),
    ("redis://127.0.0.1/0?client_name=a%20b", "option client_name: must be"),
    ("redis://127.0.0.1/0?decode_responses=no", "unknown option 'decode_responses'"),
    ("redis://127.0.0.1/0?protocol=3", "unknown option 'protocol'"),
    (f"redis://127.0.0.1/0?password={PASSWORD}", "unknown option 'password'"),
    ("redis://127.0.0.1/0?retry_on_error=x", "unknown option 'retry_on_error'"),
    ("redis://127.0.0.1/0?a", "name=value pairs"),
    ("redis://127.0.0.1/0?db=1", "the database is given twice"),
    ("rediss://127.0.0.1/0?ssl_cert_reqs=maybe", "option ssl_cert_reqs: must be none"),
    ("rediss://127.0.0.1/0?ssl_ca_certs=/nonexistent/ca.pem", "option ssl_ca_certs: must"),
    (f"redis://:{PASSWORD}@127.0.0.1:99999/0", "the port must be"),
    (f"redis://:{PASSWORD}@127.0.0.1:port/0", "the port must be"),
    ("redis://127.0.0.1:0/0", "the port must be"),
    ("redis://127.0.0.1:6379/zero", "the database (the path) must be a whole number"),
    ("redis://127.0.0.1:6379/-1", "the database (the path) must be a whole number"),
    ("redis://127.0.0.1:6379/0/1", "the database (the path) must be a whole number"),
    (f"redis://:{PASSWORD}@/0", "must name a host"),
    ("redis://bad host:6379/0", "must name a host"),
    ("redis://127.0.0.1:6379/0#x", "must not carry a fragment"),
    ("REDIS://127.0.0.1:6379/0", "must start with redis:// or rediss:// (lower case)"),
    ("unix:///var/run/redis.sock", "must be memory:// or a redis:// or rediss:// URL"),
    ("memcached://127.0.0.1:11211", "must be memory:// or a redis:// or rediss:// URL"),
    ("127.0.0.1:6379", "must be memory:// or a redis:// or rediss:// URL"),
    ("memory://shared", "memory:// takes no host, path or options"),
    ("memory://?x=1", "memory:// takes no host, path or options"),
    (f"redis://:{PASSWORD}@127.0.0.1/0?{PASSWORD}=1", "(a name that contains the password)"),
]

GOOD_STATE_URLS = [
    "memory://",
    "redis://127.0.0.1:6379/0",
    "redis://127.0.0.1",
    "redis://127.0.0.1/",
    f"redis://:{PASSWORD}@redis.internal:6379/15?socket_timeout=0.5&socket_connect_timeout=1",
    "redis://user:secret@[::1]:6379/0?health_check_interval=0&max_connections=64",
    "redis://127.0.0.1?db=3&socket_keepalive=true&client_name=failjob-reaper",
    "rediss://dcs.example.com:6379/0?ssl_cert_reqs=required&ssl_check_hostname=true",
]

LOOPBACK = {"SDRS_ENDPOINT": "http://127.0.0.1:1", "SDRS_PROJECT_ID": PROJECT}


@pytest.mark.parametrize(("url", "named"), BAD_STATE_URLS)
def test_a_state_url_the_client_would_refuse_is_a_settings_error_naming_the_option(
    url: str, named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({**LOOPBACK, "STATE_URL": url})
    message = str(raised.value)
    assert message.startswith("STATE_URL: "), message
    assert named in message, message
    assert PASSWORD not in message
    assert "\n" not in message


@pytest.mark.parametrize("url", GOOD_STATE_URLS)
def test_state_urls_with_accepted_options_start(url: str) -> None:
    assert load_settings({**LOOPBACK, "STATE_URL": url}).state_url.get_secret_value() == url


def test_the_options_of_the_url_are_what_the_client_uses(redis_url: str) -> None:
    from failjob_reaper.state import open_store

    store = open_store(redis_url + "?socket_timeout=0.25&health_check_interval=0"
                       "&socket_keepalive=off&client_name=fjr-test", namespace="fjr:t:")
    pool = store._redis.connection_pool  # type: ignore[attr-defined]
    kwargs = pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["health_check_interval"]) == (0.25, 0)
    assert kwargs["socket_keepalive"] is False  # "off" is off (redis-py alone: True)
    assert kwargs["socket_connect_timeout"] == 2.0  # the default where the URL is silent
    store.put("k", "v", 5)
    assert store.get("k") == "v"
    store.close()


def test_a_memory_start_does_not_import_redis() -> None:
    code = ("import sys; from failjob_reaper.settings import load_settings; "
            f"load_settings({LOOPBACK!r}); print('redis' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


START_URLS = [BAD_STATE_URLS[0], BAD_STATE_URLS[1], BAD_STATE_URLS[3], BAD_STATE_URLS[8]]


def _one_config_line(stderr: str, named: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(CONFIG_LINE), lines[0]
    assert named in lines[0]
    assert PASSWORD not in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("target", ["on_event", "on_http"])
@pytest.mark.parametrize(("url", "named"), START_URLS)
def test_functions_framework_does_not_start_with_a_bad_state_url(
    target: str, url: str, named: str
) -> None:
    signature = "cloudevent" if target == "on_event" else "http"
    done = subprocess.run(
        [sys.executable, "-m", "functions_framework", "--source", str(ROOT / "main.py"),
         "--target", target, "--signature-type", signature, "--host", "127.0.0.1",
         "--port", "1"],
        cwd=ROOT, env=_env(**LOOPBACK, STATE_URL=url), capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 2
    _one_config_line(done.stderr, named)


@pytest.mark.parametrize(("url", "named"), START_URLS)
def test_functiongraph_keeps_the_state_url_error_and_reports_it_per_invocation(
    url: str, named: str
) -> None:
    code = ("import main\n"
            "for _ in range(2):\n"
            "    try:\n"
            "        main.handler({'trigger_type': 'TIMER', 'user_event': ''}, None)\n"
            "    except Exception as exc:\n"
            "        print(type(exc).__name__, exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                          env=_env(**LOOPBACK, STATE_URL=url, RUNTIME_FUNC_NAME="fjr"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _one_config_line(done.stderr, named)  # logged once, at import
    answers = done.stdout.strip().splitlines()
    assert len(answers) == 2
    assert all(a.startswith("ConfigurationFailed " + CONFIG_LINE) and named in a
               for a in answers)
    assert PASSWORD not in done.stdout


@pytest.mark.parametrize("verb", [["sweep", "--dry-run"], ["plan"], ["explain", "abc-1"]])
@pytest.mark.parametrize(("url", "named"), START_URLS)
def test_the_installed_command_exits_2_with_one_line(
    verb: list[str], url: str, named: str
) -> None:
    with tempfile.TemporaryDirectory() as elsewhere:
        assert not Path(elsewhere).resolve().is_relative_to(ROOT)
        done = subprocess.run([str(COMMAND), *verb], cwd=elsewhere,
                              env=_env(**LOOPBACK, STATE_URL=url),
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    _one_config_line(done.stderr, named)
    assert PASSWORD not in done.stdout


# -- K_CE_OVERRIDES adds extensions only ---------------------------------------------------

CONTEXT_NAMES = ["id", "source", "specversion", "type", "datacontenttype", "dataschema",
                 "subject", "time", "traceparent", "tracestate"]


@pytest.mark.parametrize("name", CONTEXT_NAMES)
def test_an_override_that_names_a_context_attribute_stops_the_start(name: str) -> None:
    overrides = json.dumps({"extensions": {name: "x"}})
    done = subprocess.run([sys.executable, "-c", "import main"], cwd=ROOT,
                          env=_env(**LOOPBACK, K_CE_OVERRIDES=overrides),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0] == (f"failjob-reaper: configuration error: K_CE_OVERRIDES: extension "
                        f"'{name}' is an attribute the outcome sets itself; overrides may "
                        "only add extensions")


def test_overrides_add_extensions_and_never_change_what_an_outcome_says(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
) -> None:
    function = make_function(K_CE_OVERRIDES='{"extensions": {"team": "dr", "tier": 1}}')
    assert function.send("sdrs.failurejob.sweep", {}).status_code == 200
    [event] = sink.wait_for(1)
    attributes = event.get_attributes()
    assert (attributes["team"], attributes["tier"]) == ("dr", "1")
    assert attributes["type"] == "sdrs.failurejob.sweep_completed"
    assert "subject" not in attributes


def test_the_publisher_puts_its_own_attributes_after_the_extensions() -> None:
    # Settings refuse these names; the publisher holds the rule on its own as well.
    from failjob_reaper.outcomes import Causation, Publisher, StdoutEmitter

    own = ["id", "source", "specversion", "type", "datacontenttype", "subject", "time",
           "traceparent"]
    hostile = {"extensions": {name: "forged" for name in own}}
    publisher = Publisher(StdoutEmitter(), source="failjob-reaper", overrides=hostile)
    causation = Causation(id="in-1", source="/in", type="t", traceparent=TRACEPARENT)
    event = publisher._event("sdrs.failurejob.deleted", "task-1", causation,
                             {"outcome": "deleted"})
    attributes = event.get_attributes()
    assert attributes["type"] == "sdrs.failurejob.deleted"
    assert attributes["source"] == "failjob-reaper"
    assert attributes["subject"] == "task-1"
    assert attributes["traceparent"] == TRACEPARENT
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["specversion"] == "1.0"
    assert "forged" not in (attributes["id"], attributes["time"])


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


# -- Idempotency-Key -------------------------------------------------------------------------

NOT_KEYS_OVER_HTTP = [
    "", " ", " lead", "trail ", "x" * 256, "x" * 4000, "ключ-1", "caf\u00e9", "a\tb",
    "\x7f", "a\x01b", "tab\t", "\u202ekey", "\U0001f4a3",
]
"""Values a client can send in a header that are no key: refused with 400."""

NOT_KEYS_IN_APIG = [*NOT_KEYS_OVER_HTTP, "a\nb", "a\r\nX-Injected: 1", "a\x00b"]
"""APIG hands the headers over as JSON strings: anything at all."""

KEYS_THAT_ARE_NO_TOKENS = [
    "a b", "INC 4711/../../etc", '"},"outcome":"deleted', "<script>x</script>", "%2e%2e",
    "x" * 255, "~", "sw-1;DROP",
]
"""1-255 printable ASCII characters: keys, though no id token."""


def _http_api(make_function: FunctionFactory, **env: str) -> Function:
    return make_function(target="on_http", signature="http", RETRY_API_TOKEN=HTTP_TOKEN, **env)


@pytest.mark.parametrize("route", ["/retry", "/sweep"])
def test_a_value_that_is_no_key_is_refused_with_400_and_decides_nothing(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str], route: str,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = _http_api(make_function)
    body = {"failure_job_id": record["resource_id"]} if route == "/retry" else {}
    for key in NOT_KEYS_OVER_HTTP:
        answer = call(function, "POST", route, body, token=HTTP_TOKEN,
                      headers={"Idempotency-Key": key})
        assert answer.status_code == 400, (key, answer.data)
        error = error_of(answer)
        assert error == {"code": "invalid_idempotency_key", "message": KEY_RULE}
    # The key is looked at after the bearer token: a stranger learns nothing of the rule.
    stranger = call(function, "POST", route, body, token=None,
                    headers={"Idempotency-Key": NOT_KEYS_OVER_HTTP[0]})
    assert stranger.status_code == 401
    assert standin.requests == []
    assert sink.events == []
    assert "Traceback" not in capfd.readouterr().err


def test_a_value_that_is_no_key_is_refused_through_apig(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = functiongraph()
    body = json.dumps({"failure_job_id": record["resource_id"]}).encode()
    for key in NOT_KEYS_IN_APIG:
        answer = function(apig_event("POST", "/retry", body, token=FG_TOKEN,
                                     headers={"Idempotency-Key": key}))
        assert answer["statusCode"] == 400, key
        assert body_of(answer) == {"error": {"code": "invalid_idempotency_key",
                                             "message": KEY_RULE}}
    assert standin.requests == [] and sink.events == []


def test_keys_that_are_no_id_tokens_work_and_stay_out_of_state_keys_and_raw_logs(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    redis_url: str, redis_server: RedisServer, capfd: pytest.CaptureFixture[str],
) -> None:
    function = _http_api(make_function, STATE_URL=redis_url, LOG_FORMAT="json")
    for n, key in enumerate(KEYS_THAT_ARE_NO_TOKENS):
        body = {"failure_job_id": f"gone-{n}"}
        first = call(function, "POST", "/retry", body, token=HTTP_TOKEN,
                     headers={"Idempotency-Key": key})
        repeat = call(function, "POST", "/retry", body, token=HTTP_TOKEN,
                      headers={"Idempotency-Key": key})
        assert first.status_code == 200, first.data
        assert first.get_json()["causation"]["id"] == key
        assert repeat.get_json() == first.get_json()  # the first answer, not a new one
    assert standin.deletes() == []
    # Every state key is hashed: no key text in any of them.
    with redis_server.client() as client:
        names = [str(name) for name in client.scan_iter(match="*")]
    assert names and not [n for n in names for key in KEYS_THAT_ARE_NO_TOKENS
                          if len(key) > 1 and key in n]
    # Each log line is one JSON object; the key is a field value, escaped, never a field.
    logged = [json.loads(line) for line in capfd.readouterr().err.splitlines()
              if line.startswith("{")]
    mentioned = [entry for entry in logged if entry.get("causation_id") is not None]
    assert {entry["causation_id"] for entry in mentioned} >= set(KEYS_THAT_ARE_NO_TOKENS)
    assert all(entry.get("outcome") != "deleted" for entry in logged)


# -- event body bounds ----------------------------------------------------------------------

SMALL_LIMIT = 65_536


def cts_trace(n: int, padding: int) -> dict[str, object]:
    """A CTS trace of an SDRS operation of about ``padding`` bytes (its request/response)."""
    return {"trace_id": f"trace-{n}", "trace_name": "deleteProtectedInstance",
            "trace_type": "ApiCall", "service_type": "SDRS", "resource_type": "protectedInstance",
            "resource_id": f"11111111-2222-4333-8444-{n:012d}", "resource_name": f"pi-{n}",
            "code": "400", "time": 1733400000000 + n,
            "request": json.dumps({"padding": "r" * padding}),
            "response": json.dumps({"error": {"code": "SDRS.1234", "message": "failed"}})}


def eventgrid_event(n: int, padding: int) -> dict[str, object]:
    return {"specversion": "1.0", "id": f"eg-{n}", "source": "HC.SDRS",
            "type": "SDRS:CloudTrace:ApiCall", "datacontenttype": "application/json",
            "data": cts_trace(n, padding)}


def test_an_envelope_of_100_cts_traces_fits_the_default_bound(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
) -> None:
    envelope = json.dumps({"events": [eventgrid_event(n, 30_000) for n in range(100)]})
    assert 3_000_000 < len(envelope) < load_settings(LOOPBACK).event_max_body_bytes
    answer = make_function().post_raw({"content-type": "application/json"}, envelope.encode())
    assert answer.status_code == 200, answer.data
    assert answer.get_json()["events"] == 100


@pytest.mark.parametrize("shape", ["binary", "structured", "envelope", "not-json"])
def test_an_event_over_the_bound_is_413_and_decides_nothing(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
    capfd: pytest.CaptureFixture[str], shape: str,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = make_function(EVENT_MAX_BODY_BYTES=str(SMALL_LIMIT))
    big = {**record, "padding": "p" * SMALL_LIMIT}
    if shape == "binary":
        headers = {"ce-specversion": "1.0", "ce-id": "big-1", "ce-source": "/t",
                   "ce-type": "sdrs.job.failed", "content-type": "application/json"}
        body = json.dumps(big).encode()
    elif shape == "structured":
        headers = {"content-type": "application/cloudevents+json"}
        body = json.dumps({"specversion": "1.0", "id": "big-2", "source": "/t",
                           "type": "sdrs.job.failed", "data": big}).encode()
    elif shape == "envelope":
        headers = {"content-type": "application/json"}
        body = json.dumps({"events": [eventgrid_event(n, 8_000) for n in range(10)]}).encode()
    else:
        headers = {"content-type": "text/plain"}
        body = b"x" * (SMALL_LIMIT + 1)
    assert len(body) > SMALL_LIMIT
    answer = function.post_raw(headers, body)

    assert answer.status_code == 413
    assert answer.get_json() == {"error": {
        "code": "payload_too_large",
        "message": f"the body must not exceed {SMALL_LIMIT} bytes (EVENT_MAX_BODY_BYTES)"}}
    assert standin.requests == [] and sink.events == []
    assert standin.listed(record["resource_id"])
    assert "Traceback" not in capfd.readouterr().err


def test_an_event_at_the_bound_is_served(
    standin: TaskCenterStandIn, sink: OutcomeSink, make_function: FunctionFactory,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    body = json.dumps({**record, "padding": ""}).encode()
    body = body.replace(b'"padding": ""', b'"padding": "' + b"p" * (SMALL_LIMIT - len(body))
                        + b'"')
    assert len(body) == SMALL_LIMIT
    headers = {"ce-specversion": "1.0", "ce-id": "edge-1", "ce-source": "/t",
               "ce-type": "sdrs.job.failed", "content-type": "application/json"}
    answer = make_function(EVENT_MAX_BODY_BYTES=str(SMALL_LIMIT)).post_raw(headers, body)
    assert answer.status_code == 200
    assert standin.deletes() == [record["resource_id"]]


# -- the server in front of the app (gunicorn, as functions-framework starts it) ------------


@dataclass
class Served:
    port: int

    def exchange(self, request: bytes) -> bytes:
        """Send these bytes (a request, maybe unfinished: the connection stays open) and
        read the answer until it is complete or the server closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as conn:
            conn.sendall(request)
            received = b""
            while True:
                try:
                    chunk = conn.recv(65536)
                except (ConnectionResetError, TimeoutError):
                    break
                if not chunk:
                    break
                received += chunk
                if _complete(received):
                    break
            return received


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return body.endswith(b"0\r\n\r\n")


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _body(answer: bytes) -> bytes:
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return body
    data = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        length = int(size, 16)
        if not length:
            break
        data, body = data + rest[:length], rest[length + 2:]
    return data


@pytest.fixture
def serve(standin: TaskCenterStandIn, sink: OutcomeSink) -> Iterator[Callable[..., Served]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(target: str, **values: str) -> Served:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        signature = "cloudevent" if target == "on_event" else "http"
        env = _env(SDRS_ENDPOINT=standin.url, SDRS_PROJECT_ID=PROJECT, SDRS_AUTH_TOKEN=TOKEN,
                   K_SINK=sink.url, RETRY_API_TOKEN=HTTP_TOKEN, **values)
        process = subprocess.Popen(
            [sys.executable, "-m", "functions_framework", "--source", str(ROOT / "main.py"),
             "--target", target, "--signature-type", signature, "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        deadline = time.monotonic() + 60
        while True:  # waiting for the port to open, bounded
            assert process.poll() is None, "the function did not start"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return Served(port)
            except OSError:
                assert time.monotonic() < deadline, "the function did not start"
                time.sleep(0.05)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def _post(path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


CE_HEADERS = {"ce-specversion": "1.0", "ce-id": "served-1", "ce-source": "/t",
              "ce-type": "sdrs.failurejob.expired", "Content-Type": "application/json"}


def test_the_served_event_function_refuses_a_declared_huge_body_before_reading_it(
    standin: TaskCenterStandIn, sink: OutcomeSink, serve: Callable[..., Served],
) -> None:
    served = serve("on_event", EVENT_MAX_BODY_BYTES=str(SMALL_LIMIT))
    # 20 MB announced, 1 KB sent: the answer comes without the rest ever being sent.
    answer = served.exchange(_post("/", {**CE_HEADERS, "Content-Length": "20000000"},
                                   b"{" + b" " * 1023))
    assert _status(answer) == 413
    assert json.loads(_body(answer))["error"]["code"] == "payload_too_large"
    assert standin.requests == [] and sink.events == []


def _chunked(data: bytes, size: int = 0x2000) -> bytes:
    return b"".join(b"%x\r\n" % len(data[i:i + size]) + data[i:i + size] + b"\r\n"
                    for i in range(0, len(data), size))


@pytest.mark.parametrize("terminated", [True, False], ids=["whole", "endless"])
def test_the_served_event_function_stops_reading_a_chunked_body_at_the_bound(
    standin: TaskCenterStandIn, sink: OutcomeSink, serve: Callable[..., Served],
    terminated: bool,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    served = serve("on_event", EVENT_MAX_BODY_BYTES=str(SMALL_LIMIT))
    # A valid event whose body goes on past the bound (whitespace): cut at the bound it
    # would still parse, and be decided. "endless": a chunk past the bound, and the upload
    # never ends; the answer comes all the same, so nothing waited for the rest. (gunicorn
    # reads a chunked body 1024 bytes at a time: a client that stalls less than that past
    # the bound is waited for, as any slow client.)
    event = json.dumps({"failure_job_id": record["resource_id"]}).encode()
    past = 1 if terminated else 0x2000
    body = _chunked(event + b" " * (SMALL_LIMIT + past - len(event)))
    answer = served.exchange(_post("/", {**CE_HEADERS, "Transfer-Encoding": "chunked"},
                                   body + (b"0\r\n\r\n" if terminated else b"")))
    assert _status(answer) == 413
    assert json.loads(_body(answer))["error"]["code"] == "payload_too_large"
    assert standin.requests == [] and sink.events == []
    assert standin.listed(record["resource_id"])


def test_the_served_event_function_takes_a_chunked_body_at_the_bound(
    standin: TaskCenterStandIn, sink: OutcomeSink, serve: Callable[..., Served],
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    served = serve("on_event", EVENT_MAX_BODY_BYTES=str(SMALL_LIMIT))
    event = json.dumps({"failure_job_id": record["resource_id"]}).encode()
    body = _chunked(event + b" " * (SMALL_LIMIT - len(event))) + b"0\r\n\r\n"
    answer = served.exchange(_post("/", {**CE_HEADERS, "Transfer-Encoding": "chunked"}, body))
    assert _status(answer) == 200
    assert standin.deletes() == [record["resource_id"]]


def test_the_served_http_api_answers_key_and_body_errors_in_its_own_json(
    standin: TaskCenterStandIn, sink: OutcomeSink, serve: Callable[..., Served],
) -> None:
    served = serve("on_http")
    auth = {"Authorization": f"Bearer {HTTP_TOKEN}", "Content-Type": "application/json"}
    body = b'{"failure_job_id": "gone-1"}'
    for key in ("k" * 256, "k" * 8000):  # up to what gunicorn lets through: the app's 400
        answer = served.exchange(_post("/retry", {**auth, "Idempotency-Key": key,
                                                  "Content-Length": str(len(body))}, body))
        assert _status(answer) == 400
        assert json.loads(_body(answer)) == {"error": {"code": "invalid_idempotency_key",
                                                       "message": KEY_RULE}}
    huge = served.exchange(_post("/retry", {**auth, "Content-Length": "20000000"}, body))
    assert _status(huge) == 413
    assert json.loads(_body(huge))["error"]["code"] == "payload_too_large"
    long_path = served.exchange(_post("/" + "a" * 100_000, auth))  # no request-line limit
    assert _status(long_path) == 404
    assert json.loads(_body(long_path))["error"]["code"] == "not_found"
    assert standin.requests == [] and sink.events == []


@pytest.mark.parametrize("target", ["on_http", "on_event"])
@pytest.mark.parametrize("headers", [
    {"Idempotency-Key": "k" * 8200},  # one field over gunicorn's 8190 bytes
    {f"X-Filler-{n}": "1" for n in range(101)},  # more than gunicorn's 100 fields
], ids=["field-size", "field-count"])
def test_what_gunicorn_answers_itself_is_its_html_431_and_nothing_is_decided(
    standin: TaskCenterStandIn, sink: OutcomeSink, serve: Callable[..., Served],
    target: str, headers: dict[str, str],
) -> None:
    # functions-framework 3.10.2 starts gunicorn with its default header limits and passes
    # no option to change them: this answer never reaches the app (docs: "HTTP API").
    served = serve(target)
    record = failed_task(EXPIRED)
    standin.add_job(record)
    body = json.dumps({"failure_job_id": record["resource_id"]}).encode()
    extra = CE_HEADERS if target == "on_event" else {
        "Authorization": f"Bearer {HTTP_TOKEN}", "Content-Type": "application/json"}
    answer = served.exchange(_post("/" if target == "on_event" else "/retry",
                                   {**extra, **headers, "Content-Length": str(len(body))},
                                   body))
    assert _status(answer) == 431
    assert b"Content-Type: text/html" in answer.partition(b"\r\n\r\n")[0]
    assert standin.requests == [] and sink.events == []
    assert standin.listed(record["resource_id"])


# -- FunctionGraph payloads: the same bound on what arrives parsed -------------------------


def _fg_payloads(record: dict[str, object]) -> dict[str, object]:
    big = {**record, "padding": "p" * SMALL_LIMIT}
    event = {"specversion": "1.0", "id": "fg-big-1", "source": "/t",
             "type": "sdrs.job.failed", "data": big}
    many = [eventgrid_event(n, 1_000) for n in range(80)]  # small each, big together
    return {
        "eventgrid": event,
        "eventgrid-base64": {**{k: v for k, v in event.items() if k != "data"},
                             "data_base64": base64.b64encode(json.dumps(big).encode()).decode()},
        "envelope": {"events": many},
        "cts": {"cts": {**cts_trace(1, SMALL_LIMIT), "resource_id": record["resource_id"]}},
        "timer": {"trigger_type": "TIMER", "trigger_name": "t", "time": "2026-12-05T00:00:00Z",
                  "user_event": json.dumps({"dry_run": False}) + " " * SMALL_LIMIT},
        "deep": event | {"data": {**record, "nested": [[["x" * 100]] * 100] * 10}},
    }


@pytest.mark.parametrize("shape", ["eventgrid", "eventgrid-base64", "envelope", "cts", "timer",
                                   "deep"])
def test_a_functiongraph_payload_over_the_bound_is_refused_and_decides_nothing(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph, shape: str,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = functiongraph(EVENT_MAX_BODY_BYTES=str(SMALL_LIMIT))
    payload = _fg_payloads(record)[shape]
    assert len(json.dumps(payload)) > SMALL_LIMIT
    with pytest.raises(ValueError) as refused:
        function(payload)
    assert str(refused.value) == (
        f"failjob-reaper: the event is larger than EVENT_MAX_BODY_BYTES ({SMALL_LIMIT} "
        "bytes): nothing was decided")
    assert standin.requests == [] and sink.events == []
    assert standin.listed(record["resource_id"])


def test_a_functiongraph_payload_under_the_bound_is_served(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph,
) -> None:
    record = failed_task(EXPIRED)
    standin.add_job(record)
    function = functiongraph(EVENT_MAX_BODY_BYTES=str(SMALL_LIMIT))
    event = {"specversion": "1.0", "id": "fg-ok-1", "source": "/t", "type": "sdrs.job.failed",
             "data": {**record, "padding": "p" * (SMALL_LIMIT - 2_000)}}
    assert function(event)["status"] == "done"
    assert standin.deletes() == [record["resource_id"]]


@pytest.mark.parametrize("encoded", [True, False], ids=["base64", "text"])
def test_an_apig_body_over_http_max_body_bytes_is_413_without_being_decoded(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph,
    encoded: bool,
) -> None:
    function = functiongraph(HTTP_MAX_BODY_BYTES="1024")
    body = json.dumps({"failure_job_id": "gone-1", "pad": "p" * 2_000}).encode()
    answer = function(apig_event("POST", "/retry", body, token=FG_TOKEN, base64_body=encoded))
    assert answer["statusCode"] == 413
    assert body_of(answer)["error"]["code"] == "payload_too_large"
    assert standin.requests == [] and sink.events == []


def test_an_apig_body_that_is_no_text_is_400(
    standin: TaskCenterStandIn, sink: OutcomeSink, functiongraph: FunctionGraph,
) -> None:
    function = functiongraph()
    event = apig_event("POST", "/retry", b"{}", token=FG_TOKEN, base64_body=False)
    event["body"] = '{"failure_job_id": "\ud800"}'  # a lone surrogate, as JSON may carry
    answer = function(event)
    assert answer["statusCode"] == 400
    assert body_of(answer)["error"]["code"] == "invalid_json"
    assert standin.requests == [] and sink.events == []
