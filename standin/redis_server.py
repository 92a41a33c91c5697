"""A real ``redis-server`` (the Debian package) on a free loopback port, for tests and benchmarks.

No configuration file of the system is read and nothing is persisted: every
setting is on the command line (``--save ""``, ``--appendonly no``). Started and
stopped by its own pid; every wait is bounded.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

import redis

PACKAGE_HINT = "redis-server not found: install the Debian package redis-server (7.x)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` in its own process; ``url`` is ``redis://127.0.0.1:PORT/0``."""

    def __init__(
        self, *, port: int | None = None, password: str | None = None,
        ready_timeout: float = 10.0,
    ) -> None:
        self.port = port or _free_port()
        self.password = password
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.ready_timeout = ready_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="fjr-redis-")

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(PACKAGE_HINT)
        self._process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir.name, "--daemonize", "no",
             "--protected-mode", "yes", "--loglevel", "warning",
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                             socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + self.ready_timeout
        try:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    err = self._process.stderr.read().decode() if self._process.stderr else ""
                    raise RuntimeError(f"redis-server exited at start: {err[-500:]}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"redis-server did not answer PING within {self.ready_timeout}s"
                        ) from None
                    time.sleep(0.02)  # waiting for the port, bounded by the deadline
        finally:
            client.close()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           decode_responses=True)

    def flush(self) -> None:
        with self.client() as client:
            client.flushall()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a bounded wait); restartable."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
