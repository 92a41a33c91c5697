"""KeepAliveTransport against real loopback servers: round trips, keep-alive, faults."""

from __future__ import annotations

import contextlib
import gc
import http.client
import json
import select
import socket
import struct
import threading
from collections.abc import Iterator

import httpx
import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from failjob_reaper import _transport
from failjob_reaper._transport import KeepAliveTransport
from failjob_reaper.outcomes import SinkEmitter
from failjob_reaper.sdrs import AkSkAuth, TaskCenterClient
from standin import Fault, OutcomeSink, TaskCenterStandIn

PROJECT = "0123456789abcdef0123456789abcdef"
LIST = f"/v1/{PROJECT}/task-center/failure-jobs"
ONE = LIST + "/{}"
AK, SK = "AKTESTTRANSPORT0001", "sk-for-the-transport-tests"


@pytest.fixture
def api() -> Iterator[TaskCenterStandIn]:
    with TaskCenterStandIn(project_id=PROJECT) as server:
        yield server


@pytest.fixture
def transport() -> Iterator[KeepAliveTransport]:
    t = KeepAliveTransport()
    yield t
    t.close()


def client_for(
    url: str, transport: KeepAliveTransport, auth: httpx.Auth | None = None
) -> httpx.Client:
    """Closing the client closes the transport too (httpx does)."""
    return httpx.Client(base_url=url, transport=transport, timeout=5.0, auth=auth)


def job(number: int) -> dict[str, object]:
    return {
        "resource_id": f"{number:08d}-0000-4000-8000-000000000000",
        "begin_time": "2020-01-01T00:00:00.000Z",
        "failure_status": "failed",
        "job_type": "createProtectedInstance",
    }


def tracked(transport: KeepAliveTransport) -> set[http.client.HTTPConnection]:
    with transport._lock:
        return set(transport._tracked)


# -- round trips -----------------------------------------------------------------------


def test_get_delete_post_keep_method_path_query_headers_and_bodies(
    api: TaskCenterStandIn, transport: KeepAliveTransport
) -> None:
    api.add_job(job(1))
    with client_for(api.url, transport) as client:
        listed = client.get(LIST, params={"limit": "10", "offset": "0"},
                            headers={b"X-Probe": "värde".encode()})
        deleted = client.delete(ONE.format(job(1)["resource_id"]))
        posted = client.post(LIST, params={"q": "a b/ü&"}, content=b'{"x": [1, 2]}',
                             headers={"Content-Type": "application/json"})

    assert listed.status_code == 200
    assert listed.json()["failure_jobs"][0]["resource_id"] == job(1)["resource_id"]
    assert listed.headers["content-type"].startswith("application/json")
    assert listed.reason_phrase == "OK"
    assert listed.http_version == "HTTP/1.1"
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert posted.status_code == 405
    assert posted.json()["error"]["code"] == "SDRS.0405"
    get, delete, post = api.requests
    assert (get.method, get.path) == ("GET", LIST)
    assert get.query == {"limit": "10", "offset": "0"}
    assert get.headers["x-probe"] == "värde"
    assert get.headers["host"] == api.url.partition("://")[2]
    assert (delete.method, delete.path) == ("DELETE", ONE.format(job(1)["resource_id"]))
    assert (post.method, post.query, post.body) == ("POST", {"q": "a b/ü&"}, b'{"x": [1, 2]}')
    assert post.headers["content-length"] == str(len(post.body))
    assert not api.listed(str(job(1)["resource_id"]))


def test_a_cloudevent_post_reaches_the_sink_intact(transport: KeepAliveTransport) -> None:
    event = CloudEvent({"type": "sdrs.failurejob.deleted", "source": "test", "id": "e-1"},
                       {"outcome": "deleted", "n": "ü"})
    headers, body = to_binary(event)
    with OutcomeSink() as sink, client_for(sink.url, transport) as client:
        response = client.post("/", headers=headers, content=body)
        (got,) = sink.events

    assert response.status_code == 202
    assert (got["id"], got["type"], got.data) == ("e-1", "sdrs.failurejob.deleted",
                                                 {"outcome": "deleted", "n": "ü"})


def test_ak_sk_signatures_made_by_httpx_survive_the_wire(transport: KeepAliveTransport) -> None:
    with TaskCenterStandIn(project_id=PROJECT, credentials={AK: SK}) as signed:
        signed.add_job(job(2))
        good = AkSkAuth(AK, SK, project_id=PROJECT)
        with client_for(signed.url, transport, auth=good) as client:
            listed = client.get(LIST, params={"limit": "1000", "offset": "0"})
            deleted = client.delete(ONE.format(job(2)["resource_id"]))
        bad = AkSkAuth(AK, "not-the-secret", project_id=PROJECT)
        with client_for(signed.url, transport, auth=bad) as client:
            refused = client.get(LIST)

    assert listed.status_code == 200, listed.text
    assert len(listed.json()["failure_jobs"]) == 1
    assert deleted.status_code == 204, deleted.text
    assert refused.status_code == 401


def test_the_product_clients_use_it_by_default(api: TaskCenterStandIn) -> None:
    api.add_job(job(3))
    client = TaskCenterClient(api.url, PROJECT)
    emitter = SinkEmitter("http://127.0.0.1:9/")
    try:
        assert isinstance(client._http._transport, KeepAliveTransport)
        assert isinstance(emitter._http._transport, KeepAliveTransport)
        assert [j["resource_id"] for j in client.list_failure_jobs()] == [job(3)["resource_id"]]
        assert client.delete_failure_job(str(job(3)["resource_id"])).found
    finally:
        client.close()
        emitter.close()
    assert len({r.client_port for r in api.requests}) == 1


# -- keep-alive ----------------------------------------------------------------------------


def test_one_thread_reuses_one_connection(
    api: TaskCenterStandIn, transport: KeepAliveTransport
) -> None:
    with client_for(api.url, transport) as client:
        for _ in range(5):
            assert client.get(LIST).status_code == 200
        assert len(tracked(transport)) == 1

    assert tracked(transport) == set()
    assert len(api.requests) == 5
    assert len({r.client_port for r in api.requests}) == 1


def test_connection_close_from_the_server_is_respected(
    api: TaskCenterStandIn, transport: KeepAliveTransport
) -> None:
    api.inject("GET", "failure-jobs", Fault(200, headers={"Connection": "close"}, body=b"{}"))
    with client_for(api.url, transport) as client:
        statuses = [client.get(LIST).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    first, second, third = (r.client_port for r in api.requests)
    assert first != second == third


def test_threads_never_share_a_connection_and_theirs_close_when_they_end(
    api: TaskCenterStandIn, transport: KeepAliveTransport
) -> None:
    both_connected = threading.Barrier(2, timeout=10)
    errors: list[BaseException] = []
    client = client_for(api.url, transport)

    def work() -> None:
        try:
            client.get(LIST, headers={"X-Thread": threading.current_thread().name})
            both_connected.wait()  # both connections exist at once
            client.get(LIST, headers={"X-Thread": threading.current_thread().name})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, name=f"worker-{n}") for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    gc.collect()

    assert errors == []
    ports: dict[str, set[int]] = {}
    for r in api.requests:
        ports.setdefault(r.headers["x-thread"], set()).add(r.client_port)
    assert sorted(ports) == ["worker-0", "worker-1"]
    assert all(len(p) == 1 for p in ports.values())
    assert ports["worker-0"].isdisjoint(ports["worker-1"])
    assert tracked(transport) == set()  # the ended threads' connections are closed
    client.close()


def test_close_closes_every_threads_connections(
    api: TaskCenterStandIn, transport: KeepAliveTransport
) -> None:
    connected, release = threading.Event(), threading.Event()
    client = client_for(api.url, transport)

    def hold() -> None:
        client.get(LIST)
        connected.set()
        release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert connected.wait(10)
        client.get(LIST)
        conns = tracked(transport)
        assert len(conns) == 2
        transport.close()
        assert all(conn.sock is None for conn in conns)
        assert tracked(transport) == set()
        # Usable afterwards: a new connection, tracked again.
        assert client.get(LIST).status_code == 200
        assert len(tracked(transport)) == 1
    finally:
        release.set()
        holder.join(10)
    assert len({r.client_port for r in api.requests}) == 3


# -- connections the server closed ---------------------------------------------------------


class IdleCloser:
    """A keep-alive server that closes its first connection once ``release`` is set (with a
    FIN, or a reset when ``reset=True``) and serves later connections until the client
    closes them. Records each connection's client port."""

    def __init__(self, *, reset: bool = False) -> None:
        self.reset = reset
        self.release = threading.Event()
        self.ports: list[int] = []
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, (_, port) = self._listener.accept()
            except OSError:
                return
            first = not self.ports
            self.ports.append(port)
            with conn:
                while self._answer(conn):
                    if first:
                        self.release.wait(10)
                        if self.reset:
                            linger = struct.pack("ii", 1, 0)
                            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                        break

    def _answer(self, conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return False
            if not chunk:
                return False
            data += chunk
        self.requests += 1
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return True

    def close(self) -> None:
        self._listener.close()
        self._thread.join(10)


def wait_until_readable(transport: KeepAliveTransport) -> None:
    (conn,) = tracked(transport)
    assert conn.sock is not None
    readable, _, _ = select.select([conn.sock], [], [], 10)
    assert readable, "the server's close never arrived"


def test_an_idle_connection_the_server_closed_is_replaced_before_use(
    transport: KeepAliveTransport,
) -> None:
    server = IdleCloser()
    try:
        with client_for(server.url, transport) as client:
            assert client.get("/a").text == "ok"
            server.release.set()
            wait_until_readable(transport)
            assert client.get("/b").text == "ok"
    finally:
        server.close()
    assert server.requests == 2
    assert len(set(server.ports)) == 2


def test_a_request_that_cannot_be_sent_on_a_reused_connection_is_sent_once_more(
    transport: KeepAliveTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race the idle check cannot see: the reset arrives, then the request is sent.
    server = IdleCloser(reset=True)
    try:
        with client_for(server.url, transport) as client:
            assert client.get("/a").text == "ok"
            server.release.set()
            wait_until_readable(transport)
            monkeypatch.setattr(_transport, "_readable", lambda sock: False)
            assert client.get("/b").text == "ok"
    finally:
        server.close()
    assert server.requests == 2
    assert len(set(server.ports)) == 2


def test_a_drop_after_the_request_went_out_is_reported_not_repeated(
    api: TaskCenterStandIn, transport: KeepAliveTransport
) -> None:
    # On a reused connection too: the server may have acted on it (SDRS: the caller's
    # retry then sees 404 and counts the attempt).
    api.inject("DELETE", "failure-jobs/", Fault(500, close=True))
    with client_for(api.url, transport) as client:
        assert client.get(LIST).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            client.delete(ONE.format("x"))
        assert client.get(LIST).status_code == 200
        assert len(tracked(transport)) == 1

    get, delete, again = api.requests
    assert delete.fault is not None and delete.status == 0
    assert get.client_port == delete.client_port != again.client_port


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, b'{"error": {"code": "SDRS.0500"}}'],
                         ids=["no-answer", "half-a-body"])
def test_a_dropped_connection_is_a_transport_error(
    api: TaskCenterStandIn, transport: KeepAliveTransport, body: bytes | None
) -> None:
    with client_for(api.url, transport) as client:
        assert client.get(LIST).status_code == 200
        api.inject("GET", "failure-jobs", Fault(500, body=body, close=True))
        with pytest.raises(httpx.TransportError) as err:
            client.get(LIST)
        assert isinstance(err.value, httpx.RemoteProtocolError | httpx.ReadError)
        assert tracked(transport) == set()
    assert len(api.requests) == 2  # not sent again, though on a reused connection


def test_a_slow_answer_is_a_read_timeout(
    api: TaskCenterStandIn, transport: KeepAliveTransport
) -> None:
    api.inject("GET", "failure-jobs", Fault(200, body=b"{}", delay=5.0))
    timeout = httpx.Timeout(5.0, read=0.2)
    with client_for(api.url, transport) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get(LIST, timeout=timeout)
        assert tracked(transport) == set()
        assert client.get(LIST).status_code == 200  # a fresh connection afterwards


def test_a_closed_port_is_a_connect_error(transport: KeepAliveTransport) -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        with client_for(url, transport) as client:
            with pytest.raises(httpx.ConnectError):
                client.get("/")
            assert tracked(transport) == set()


def test_errors_reach_the_product_as_retryable_failures(api: TaskCenterStandIn) -> None:
    from failjob_reaper.sdrs import RetryPolicy

    api.add_job(job(4))
    api.inject("GET", "failure-jobs", Fault(500, close=True))
    client = TaskCenterClient(api.url, PROJECT,
                              retry=RetryPolicy(backoff_initial=0.0, backoff_max=0.0))
    try:
        assert len(client.list_failure_jobs()) == 1
    finally:
        client.close()
    assert [r.status for r in api.requests] == [0, 200, 200]  # then the empty last page


def test_unsupported_scheme(transport: KeepAliveTransport) -> None:
    request = httpx.Request("GET", "ftp://127.0.0.1/")
    with pytest.raises(httpx.UnsupportedProtocol):
        transport.handle_request(request)


def test_a_response_body_is_decoded_as_httpx_would(transport: KeepAliveTransport) -> None:
    import gzip

    payload = json.dumps({"ok": True}).encode()
    packed = gzip.compress(payload)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                while b"\r\n\r\n" not in conn.recv(65536):
                    pass
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(packed) + packed)
                with contextlib.suppress(OSError):
                    conn.recv(1)

        server = threading.Thread(target=answer, daemon=True)
        server.start()
        with client_for(url, transport) as client:
            response = client.get("/")
        transport.close()
        server.join(10)
    assert response.json() == {"ok": True}


def test_a_proxy_in_the_environment_switches_to_httpx_own_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from failjob_reaper._transport import KeepAliveTransport, transport_for

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                 "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(transport_for("https://sdrs.example.com"), KeepAliveTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert isinstance(transport_for("https://sdrs.example.com"), httpx.HTTPTransport)
    monkeypatch.setenv("NO_PROXY", "sdrs.example.com")
    assert isinstance(transport_for("https://sdrs.example.com"), KeepAliveTransport)
