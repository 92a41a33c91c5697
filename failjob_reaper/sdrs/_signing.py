"""SDK-HMAC-SHA256 request signing (Huawei Cloud AK/SK), as huaweicloudsdkcore does it.

Where the prose in platforms.md and the official signer
(``huaweicloudsdkcore.signer.signer.Signer``) could be read differently, this
module follows the official signer:

* the path is unquoted *before* it is split on ``/``: an encoded ``%2F`` inside
  a segment becomes a separator, and is signed as ``/``;
* query pairs are sorted on their *decoded* (key, value), not on the encoded
  text; ``+`` in the query string is decoded as a space (what the server's
  parser sees) and re-encoded as ``%20``;
* header values are stripped with ``str.strip()`` (inner whitespace is kept);
* an empty body always hashes as the empty string, and a non-empty body with an
  ``X-Sdk-Content-Sha256`` header (the SDK sets ``UNSIGNED-PAYLOAD`` for
  non-JSON content types) uses that header's value instead of the body hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Generator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import httpx

__all__ = [
    "ALGORITHM",
    "DATE_FORMAT",
    "AkSkAuth",
    "TokenAuth",
    "canonical_request",
    "sign_request",
    "verify_signature",
]

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_CONTENT_SHA256 = "x-sdk-content-sha256"
# Signed by default when present: stable headers a proxy will not rewrite.
_OPTIONAL_SIGNED = ("x-security-token", "x-project-id", "content-type")


def _encode(text: str) -> str:
    # quote() keeps letters, digits and "_.-"; "~" is the only extra safe char.
    return quote(text, safe="~")


def _canonical_uri(raw_path: str) -> str:
    encoded = "/".join(_encode(segment) for segment in unquote(raw_path or "/").split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def _canonical_query(raw_query: str) -> str:
    pairs = sorted(parse_qsl(raw_query, keep_blank_values=True))
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in pairs)


def _host_of(url: str) -> str:
    # What httpx puts in Host: the netloc without userinfo.
    netloc = urlsplit(url).netloc
    return netloc.rpartition("@")[2]


def _default_signed(lowered: Mapping[str, str]) -> list[str]:
    names = ["host", "x-sdk-date"]
    names += [name for name in _OPTIONAL_SIGNED if name in lowered]
    return sorted(names)


def canonical_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    signed_headers: Sequence[str] | None = None,
) -> tuple[str, list[str]]:
    """Return the canonical request text and the sorted signed header names."""
    lowered = {name.lower(): value for name, value in headers.items()}
    lowered.setdefault("host", _host_of(url))
    names = (
        _default_signed(lowered)
        if signed_headers is None
        else sorted({name.lower() for name in signed_headers})
    )
    missing = [name for name in names if name not in lowered]
    if missing:
        raise ValueError(f"signed header(s) not in the request: {', '.join(missing)}")
    canonical_headers = "".join(f"{name}:{lowered[name].strip()}\n" for name in names)

    if not body:
        payload_hash = _EMPTY_SHA256
    elif _CONTENT_SHA256 in lowered:
        payload_hash = lowered[_CONTENT_SHA256].strip()
    else:
        payload_hash = hashlib.sha256(body).hexdigest()

    parts = urlsplit(url)
    text = "\n".join(
        [
            method.upper(),
            _canonical_uri(parts.path),
            _canonical_query(parts.query),
            canonical_headers,
            ";".join(names),
            payload_hash,
        ]
    )
    return text, names


def _signature(canonical: str, sdk_date: str, sk: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{sdk_date}\n{digest}"
    return hmac.new(sk.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    ak: str,
    sk: str,
    *,
    signed_headers: Sequence[str] | None = None,
) -> str:
    """Return the ``Authorization`` value for a request that already carries X-Sdk-Date.

    ``url`` is the full URL as sent (percent-encoded path, query included).
    """
    raw_date = {name.lower(): value for name, value in headers.items()}.get("x-sdk-date")
    if raw_date is None:
        raise ValueError("X-Sdk-Date header is required for signing")
    try:
        # The string to sign carries the date re-formatted, as the SDK does.
        sdk_date = datetime.strptime(raw_date.strip(), DATE_FORMAT).strftime(DATE_FORMAT)
    except ValueError:
        raise ValueError(f"X-Sdk-Date is not {DATE_FORMAT}") from None
    canonical, names = canonical_request(
        method, url, headers, body, signed_headers=signed_headers
    )
    signature = _signature(canonical, sdk_date, sk)
    return f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(names)}, Signature={signature}"


def _parse_authorization(value: str) -> dict[str, str] | None:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            return None
        fields[key] = val
    if not {"Access", "SignedHeaders", "Signature"} <= fields.keys():
        return None
    return fields


def verify_signature(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    ak_to_sk: Mapping[str, str],
    now: datetime,
    max_skew: timedelta = timedelta(minutes=15),
) -> str | None:
    """Check an SDK-HMAC-SHA256 signature: None when valid, else a short reason."""
    lowered = {name.lower(): value for name, value in headers.items()}
    authorization = lowered.get("authorization")
    if not authorization:
        return "missing Authorization header"
    if not authorization.strip().startswith(ALGORITHM + " "):
        return "unsupported signing algorithm"
    fields = _parse_authorization(authorization)
    if fields is None:
        return "malformed Authorization header"
    sk = ak_to_sk.get(fields["Access"])
    if sk is None:
        return "unknown access key"
    raw_date = lowered.get("x-sdk-date")
    if raw_date is None:
        return "missing X-Sdk-Date header"
    try:
        signed_at = datetime.strptime(raw_date.strip(), DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return "malformed X-Sdk-Date header"
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if abs(now - signed_at) > max_skew:
        return "X-Sdk-Date outside the allowed clock skew"
    names = [name for name in fields["SignedHeaders"].split(";") if name]
    # Without these two a signature could be replayed to another host or time.
    for required in ("host", "x-sdk-date"):
        if required not in names:
            return f"{required} is not signed"
    try:
        expected = sign_request(
            method, url, headers, body, fields["Access"], sk, signed_headers=names
        )
    except ValueError as exc:
        return str(exc)
    if not hmac.compare_digest(expected.encode("utf-8"), authorization.strip().encode("utf-8")):
        return "signature mismatch"
    return None


def _mask(value: str) -> str:
    return value[:4] + "***" if len(value) > 8 else "***"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AkSkAuth(httpx.Auth):
    """httpx auth that signs every request (and every retry) with a fresh X-Sdk-Date.

    The body is always hashed: unlike the SDK it never sends UNSIGNED-PAYLOAD.
    """

    requires_request_body = True

    def __init__(
        self,
        ak: str,
        sk: str,
        security_token: str | None = None,
        project_id: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not ak or not sk:
            raise ValueError("both an access key and a secret key are required")
        self._ak = ak
        self._sk = sk
        self._security_token = security_token
        self._project_id = project_id
        self._clock = clock or _utc_now

    @property
    def ak(self) -> str:
        return self._ak

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        now = self._clock()
        if now.tzinfo is not None:
            now = now.astimezone(UTC)
        request.headers["X-Sdk-Date"] = now.strftime(DATE_FORMAT)
        if self._security_token is not None:
            request.headers["X-Security-Token"] = self._security_token
        if self._project_id is not None:
            request.headers["X-Project-Id"] = self._project_id
        request.headers.pop("Authorization", None)
        request.headers["Authorization"] = sign_request(
            request.method,
            str(request.url),
            dict(request.headers),
            request.content,
            self._ak,
            self._sk,
        )
        yield request

    def __repr__(self) -> str:
        token = ", security_token=***" if self._security_token is not None else ""
        return f"AkSkAuth(ak={_mask(self._ak)!r}, sk=***{token})"

    __str__ = __repr__


class TokenAuth(httpx.Auth):
    """httpx auth sending a static IAM token as X-Auth-Token."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an IAM token is required")
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Auth-Token"] = self._token
        yield request

    def __repr__(self) -> str:
        return "TokenAuth(token=***)"

    __str__ = __repr__
