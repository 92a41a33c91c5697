"""Request authentication for the Huawei Cloud stand-ins: IAM token or AK/SK signature.

The same check the task-center stand-in makes: ``X-Auth-Token`` compared in
constant time, or an SDK-HMAC-SHA256 signature verified with the official
algorithm (``failjob_reaper.sdrs._signing.verify_signature``).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

from failjob_reaper.sdrs._signing import verify_signature


def auth_failure(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    base_url: str,
    token: str | None,
    credentials: Mapping[str, str] | None,
) -> str | None:
    """None when the request is authenticated (or nothing is required), else why not."""
    if token is None and credentials is None:
        return None
    given = headers.get("x-auth-token")
    if token is not None and given is not None and hmac.compare_digest(
        given.encode(), token.encode()
    ):
        return None
    if credentials is not None and "authorization" in headers:
        url = f"http://{headers.get('host', base_url.partition('://')[2])}{target}"
        return verify_signature(method, url, headers, body, credentials, now=datetime.now(UTC))
    if token is not None:
        return "invalid X-Auth-Token" if given is not None else "missing X-Auth-Token"
    return "missing Authorization header"
