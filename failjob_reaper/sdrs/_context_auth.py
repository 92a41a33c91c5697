"""AK/SK signing with credentials the platform hands over per invocation.

Huawei FunctionGraph gives a function the temporary credentials of its agency
through the invocation context (``getSecurityAccessKey()``,
``getSecuritySecretKey()``, ``getSecurityToken()``), and they rotate. The
process builds one ``TaskCenterClient`` (one connection pool) and reuses it, so
its auth must be able to change credentials under it: the FunctionGraph handler
calls ``update()`` at the start of every invocation, exactly like ``AkSkAuth``
signs (the security token is sent and signed as ``X-Security-Token``).

Concurrent invocations share the process: ``update()`` binds the credentials to
the calling invocation's context (a ``ContextVar``: its thread, or its task) and
also makes them the newest, which threads without a binding of their own (a
sweep's worker pool) sign with. Nothing is ever cleared: there is no moment in
which a running invocation finds no credentials, and an invocation that brings
none fails before it sends anything (the handler checks the context first).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Generator
from datetime import datetime

import httpx

from failjob_reaper.sdrs._signing import AkSkAuth

__all__ = ["MissingCredentials", "RotatingAkSkAuth"]


_BOUND: contextvars.ContextVar[tuple[int, AkSkAuth] | None] = contextvars.ContextVar(
    "failjob_reaper_invocation_signer", default=None
)
"""(id of the RotatingAkSkAuth, its signer for this invocation's context)."""


class MissingCredentials(RuntimeError):
    """A request was about to be sent before any credentials were set."""


class RotatingAkSkAuth(httpx.Auth):
    """httpx auth signing with the AK/SK(/security token) last given to ``update()``.

    Thread-safe: a sweep signs from several threads while the next invocation
    may already be updating; each request is signed with one consistent
    (AK, SK, token) triple: its invocation's own when the request is sent from
    that invocation's context, else the newest at the time it is (re)sent.
    """

    requires_request_body = True

    def __init__(
        self,
        *,
        project_id: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._project_id = project_id
        self._clock = clock
        self._lock = threading.Lock()
        self._current: tuple[str, str, str | None] | None = None
        self._signer: AkSkAuth | None = None

    def update(self, ak: str, sk: str, security_token: str | None = None) -> None:
        """Sign this invocation's requests (its context) with these credentials, and make
        them the newest for everyone else; ValueError if the AK or SK is empty.

        One atomic swap: the previous credentials stay valid for requests already
        being signed, and no one ever sees none."""
        token = security_token or None
        credentials = (ak, sk, token)
        with self._lock:
            signer = self._signer
            if credentials != self._current or signer is None:
                signer = AkSkAuth(ak, sk, security_token=token, project_id=self._project_id,
                                  clock=self._clock)
                self._current, self._signer = credentials, signer
        _BOUND.set((id(self), signer))

    @property
    def has_credentials(self) -> bool:
        with self._lock:
            return self._signer is not None

    @property
    def ak(self) -> str | None:
        """The access key in use (not a secret; for logs and tests)."""
        with self._lock:
            return self._signer.ak if self._signer is not None else None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        bound = _BOUND.get()
        if bound is not None and bound[0] == id(self):
            signer: AkSkAuth | None = bound[1]
        else:
            with self._lock:
                signer = self._signer
        if signer is None:
            raise MissingCredentials(
                "no credentials: RotatingAkSkAuth.update() was not called before the request"
            )
        yield from signer.auth_flow(request)

    def __repr__(self) -> str:
        return f"RotatingAkSkAuth(current={self._signer!r})"

    __str__ = __repr__
