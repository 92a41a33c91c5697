"""FunctionGraph's per-invocation credentials: concurrent invocations never see none,
and each signs with its own (issue 11: the ``auth.clear()`` race)."""

from __future__ import annotations

import threading

import httpx

from failjob_reaper.sdrs import MissingCredentials, RotatingAkSkAuth
from tests.conftest import PROJECT

FIRST = ("AKFIRST0000000000001", "sk-first-secret-1", "token-first")
SECOND = ("AKSECOND000000000002", "sk-second-secret-2", "token-second")


def _signed_ak(client: httpx.Client) -> str:
    response = client.get("http://127.0.0.1/v1/probe")
    return response.text


def _client(auth: RotatingAkSkAuth) -> httpx.Client:
    def answer(request: httpx.Request) -> httpx.Response:
        header = request.headers.get("Authorization", "")
        ak = header.split("Access=", 1)[1].split(",", 1)[0] if "Access=" in header else ""
        return httpx.Response(200, text=ak)

    return httpx.Client(auth=auth, transport=httpx.MockTransport(answer))


def test_an_invocation_without_credentials_leaves_a_running_one_signing() -> None:
    auth = RotatingAkSkAuth(project_id=PROJECT)
    running_has_them = threading.Event()
    others_done = threading.Event()
    failures: list[BaseException] = []
    signed_with: list[str] = []

    def running_invocation() -> None:
        auth.update(*FIRST)
        running_has_them.set()
        with _client(auth) as client:
            try:
                while not others_done.is_set():
                    signed_with.append(_signed_ak(client))
                signed_with.append(_signed_ak(client))
            except MissingCredentials as exc:
                failures.append(exc)

    def other_invocations() -> None:
        running_has_them.wait(timeout=5)
        for _ in range(200):
            # What the handler does for an invocation whose context has no agency
            # credentials: it refuses before any request and never clears anything.
            assert auth.has_credentials
            auth.update(*SECOND)  # and one that brings rotated credentials
        others_done.set()

    threads = [threading.Thread(target=running_invocation),
               threading.Thread(target=other_invocations)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert signed_with and set(signed_with) == {FIRST[0]}  # its own, not the other's


def test_threads_without_an_invocation_of_their_own_sign_with_the_newest() -> None:
    auth = RotatingAkSkAuth(project_id=PROJECT)
    auth.update(*FIRST)
    auth.update(*SECOND)
    seen: list[str] = []

    def pool_thread() -> None:  # a sweep worker: a fresh thread, no binding of its own
        with _client(auth) as client:
            seen.append(_signed_ak(client))

    thread = threading.Thread(target=pool_thread)
    thread.start()
    thread.join(timeout=10)
    assert seen == [SECOND[0]]


def test_a_fresh_process_without_any_update_refuses_to_send() -> None:
    auth = RotatingAkSkAuth(project_id=PROJECT)
    errors: list[BaseException] = []

    def send() -> None:
        with _client(auth) as client:
            try:
                _signed_ak(client)
            except MissingCredentials as exc:
                errors.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    thread.join(timeout=10)
    assert len(errors) == 1
