"""TLS contexts for the process's HTTP clients.

Loading the CA bundle costs tens of milliseconds, paid on every cold start if
each client builds its own. So: one verified context per process, built only
when some URL is https; a plain-http URL (the loopback stand-in, a
cluster-local sink) gets a bare client context that never does a handshake.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def _verified() -> ssl.SSLContext:
    # httpx's own default: certifi, or SSL_CERT_FILE / SSL_CERT_DIR when set.
    return httpx.create_ssl_context()


def context_for(url: str) -> ssl.SSLContext:
    if url.lower().startswith("https:"):
        return _verified()
    # Verification stays on (the defaults of PROTOCOL_TLS_CLIENT); it is just never used.
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
