"""SDK-HMAC-SHA256 signing: published vectors, the official signer, httpx auth classes."""

from __future__ import annotations

import asyncio
import types
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, quote_plus, urlencode

import httpx
import pytest
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from failjob_reaper.sdrs._signing import (
    AkSkAuth,
    TokenAuth,
    canonical_request,
    sign_request,
    verify_signature,
)

AK, SK = "AccessKey", "SecretKey"
VECTOR_URL = "https://service.endpoint.myhuaweicloud.com/resources?size=1"
VECTOR_HEADERS = {"X-Sdk-Date": "20200608T023900Z"}
VECTOR_NOW = datetime(2020, 6, 8, 2, 39, tzinfo=UTC)


def _auth(signature: str, signed: str = "host;x-sdk-date", ak: str = AK) -> str:
    return f"SDK-HMAC-SHA256 Access={ak}, SignedHeaders={signed}, Signature={signature}"


# -- published vectors ---------------------------------------------------------


def test_vector_get_empty_body() -> None:
    value = sign_request("GET", VECTOR_URL, VECTOR_HEADERS, b"", AK, SK)
    assert value == _auth("cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842")


def test_vector_post_json_body() -> None:
    body = b'{"name":"test","id":1}'
    value = sign_request("POST", VECTOR_URL, VECTOR_HEADERS, body, AK, SK)
    assert value == _auth("436b1ac0a1ae03705934bb70ef2f2e09f7bfed2117d731a38235053199323a1f")


def test_vector_with_explicit_host_and_signed_headers() -> None:
    headers = {
        "Host": "service.endpoint.myhuaweicloud.com",
        "X-Sdk-Date": "20200608T023900Z",
        "User-Agent": "not signed",
    }
    value = sign_request(
        "get", VECTOR_URL, headers, b"", AK, SK, signed_headers=["X-Sdk-Date", "Host"]
    )
    assert value == _auth("cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842")


def test_canonical_request_shape() -> None:
    text, names = canonical_request("GET", VECTOR_URL, VECTOR_HEADERS, b"")
    assert names == ["host", "x-sdk-date"]
    assert text.split("\n") == [
        "GET",
        "/resources/",  # the trailing slash the SDK always adds
        "size=1",
        "host:service.endpoint.myhuaweicloud.com",
        "x-sdk-date:20200608T023900Z",
        "",
        "host;x-sdk-date",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ]


def test_default_signed_headers_include_token_project_and_content_type() -> None:
    headers = {
        **VECTOR_HEADERS,
        "X-Security-Token": "tok",
        "X-Project-Id": "p1",
        "Content-Type": "application/json",
        "Accept": "*/*",
    }
    value = sign_request("GET", VECTOR_URL, headers, b"", AK, SK)
    assert "SignedHeaders=content-type;host;x-project-id;x-sdk-date;x-security-token," in value


def test_missing_date_or_signed_header_is_an_error() -> None:
    with pytest.raises(ValueError, match="X-Sdk-Date"):
        sign_request("GET", VECTOR_URL, {}, b"", AK, SK)
    with pytest.raises(ValueError, match="x-project-id"):
        sign_request(
            "GET", VECTOR_URL, VECTOR_HEADERS, b"", AK, SK, signed_headers=["host", "x-project-id"]
        )


# -- the official signer -------------------------------------------------------


def _official(
    method: str,
    host: str,
    resource_path: str,
    pairs: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
) -> tuple[str, dict[str, str]]:
    """Sign with huaweicloudsdkcore; return Authorization and the headers it added."""
    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=resource_path,
        query_params=list(pairs),
        header_params=dict(headers),
        body=body,
    )
    Signer(types.SimpleNamespace(ak=AK, sk=SK)).sign(request)
    added = {
        k: v for k, v in request.header_params.items() if k not in headers and k != "Authorization"
    }
    return str(request.header_params["Authorization"]), added


_header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,10}", fullmatch=True).filter(
    lambda n: n.lower()
    not in {"host", "x-sdk-date", "authorization", "content-type", "x-sdk-content-sha256"}
)
_keys = st.one_of(st.sampled_from(["a", "b", "limit", "é", "A", "a b", "~k"]), st.text(min_size=1))


@st.composite
def _requests(draw: st.DrawFn) -> dict[str, object]:
    segments = draw(st.lists(st.text(max_size=8), max_size=4))
    path_safe = draw(st.sampled_from(["", "!$&'()*+,;=:@"]))
    resource_path = "/" + "/".join(quote(s, safe=path_safe) for s in segments)
    if draw(st.booleans()):
        resource_path += "/"
    pairs = draw(st.lists(st.tuples(_keys, st.text(max_size=6)), max_size=6))
    extra = draw(st.dictionaries(_header_names, st.text(max_size=10), max_size=3))
    headers = dict({n.lower(): (n, v) for n, v in extra.items()}.values())  # unique by case
    content_type = draw(
        st.sampled_from([None, "application/json", "application/json;charset=UTF-8", "text/plain"])
    )
    if content_type is not None:
        headers["Content-Type"] = content_type
    moment = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)))
    headers["X-Sdk-Date"] = moment.strftime("%Y%m%dT%H%M%SZ")
    host = draw(st.sampled_from(["service.endpoint.myhuaweicloud.com", "127.0.0.1:8089"]))
    headers["Host"] = host
    return {
        "method": draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])),
        "host": host,
        "resource_path": resource_path,
        "pairs": pairs,
        "headers": headers,
        "body": draw(st.binary(max_size=40)),
        "plus": draw(st.booleans()),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests())
def test_matches_official_signer(req: dict[str, object]) -> None:
    method, host, path = str(req["method"]), str(req["host"]), str(req["resource_path"])
    pairs: list[tuple[str, str]] = req["pairs"]  # type: ignore[assignment]
    headers: dict[str, str] = req["headers"]  # type: ignore[assignment]
    body: bytes = req["body"]  # type: ignore[assignment]
    expected, added = _official(method, host, path, pairs, headers, body)

    # The query as a client would send it: %20 (the SDK) or "+" (httpx) for spaces.
    query = urlencode(pairs, quote_via=quote_plus if req["plus"] else quote)
    url = f"https://{host}{path}" + (f"?{query}" if query else "")
    all_headers = {**headers, **added}
    names = sorted(n.lower() for n in all_headers)
    assert expected.split("SignedHeaders=")[1].split(",")[0] == ";".join(names)
    assert sign_request(method, url, all_headers, body, AK, SK, signed_headers=names) == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests(), st.binary(min_size=1, max_size=8))
def test_verify_accepts_own_signature_and_rejects_tampering(
    req: dict[str, object], junk: bytes
) -> None:
    headers: dict[str, str] = dict(req["headers"])  # type: ignore[call-overload]
    headers.pop("Content-Type", None)
    body: bytes = req["body"]  # type: ignore[assignment]
    method, host, path = str(req["method"]), str(req["host"]), str(req["resource_path"])
    url = f"https://{host}{path}"
    headers["Authorization"] = sign_request(method, url, headers, body, AK, SK)
    now = datetime.strptime(headers["X-Sdk-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert verify_signature(method, url, headers, body, {AK: SK}, now) is None
    reason = verify_signature(method, url, headers, body + junk, {AK: SK}, now)
    assert reason == "signature mismatch"


# -- verify_signature ------------------------------------------------------------


def _signed_vector(**overrides: str) -> dict[str, str]:
    headers = {**VECTOR_HEADERS, **overrides}
    headers["Authorization"] = sign_request("GET", VECTOR_URL, headers, b"", AK, SK)
    return headers


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: h.pop("Authorization"), "missing Authorization header"),
        (lambda h: h.update(Authorization="Basic abc"), "unsupported signing algorithm"),
        (lambda h: h.update(Authorization="SDK-HMAC-SHA256 nonsense"), "malformed Authorization"),
        (lambda h: h.update(Authorization=_auth("00", ak="Other")), "unknown access key"),
        (lambda h: h.update({"X-Sdk-Date": "yesterday"}), "malformed X-Sdk-Date"),
        (lambda h: h.update({"X-Sdk-Date": "20200608T020000Z"}), "skew"),
        (lambda h: h.update(Authorization=_auth("00", signed="x-sdk-date")), "host is not signed"),
        (lambda h: h.update(Authorization=_auth("00")), "signature mismatch"),
    ],
)
def test_verify_rejections(mutate: object, reason: str) -> None:
    headers = _signed_vector()
    mutate(headers)  # type: ignore[operator]
    got = verify_signature("GET", VECTOR_URL, headers, b"", {AK: SK}, VECTOR_NOW)
    assert got is not None and reason in got


def test_verify_rejects_other_query_and_wrong_secret() -> None:
    headers = _signed_vector()
    assert verify_signature("GET", VECTOR_URL, headers, b"", {AK: SK}, VECTOR_NOW) is None
    other = VECTOR_URL.replace("size=1", "size=2")
    assert verify_signature("GET", other, headers, b"", {AK: SK}, VECTOR_NOW) is not None
    assert verify_signature("GET", VECTOR_URL, headers, b"", {AK: "nope"}, VECTOR_NOW) is not None
    naive_now = VECTOR_NOW.replace(tzinfo=None) + timedelta(minutes=14)
    assert verify_signature("GET", VECTOR_URL, headers, b"", {AK: SK}, naive_now) is None


# -- httpx auth --------------------------------------------------------------------


class _Clock:
    """A clock that advances one minute per reading."""

    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def _verifying_transport(clock: _Clock, seen: list[httpx.Headers]) -> httpx.MockTransport:
    """Answers 200 when the signature verifies; keeps a copy of each request's headers."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.copy())
        reason = verify_signature(
            request.method, str(request.url), request.headers, request.content, {AK: SK}, clock.now
        )
        return httpx.Response(401 if reason else 200, json={"reason": reason})

    return httpx.MockTransport(handler)


def test_aksk_auth_signs_what_verify_accepts() -> None:
    clock, seen = _Clock(), list[httpx.Headers]()
    auth = AkSkAuth(AK, SK, security_token="sts-token", project_id="p1", clock=clock)
    with httpx.Client(auth=auth, transport=_verifying_transport(clock, seen)) as client:
        get = client.get(
            "https://sdrs.example.com:8443/v1/p1/task-center/failure-jobs",
            params={"server_group_id": "g 1", "limit": 1000, "offset": 0},
        )
        post = client.post("https://sdrs.example.com/v1/p1/x", json={"a": "é"})
        delete = client.delete("https://sdrs.example.com/v1/p1/task-center/failure-jobs/a%2Fb")
    assert [r.status_code for r in (get, post, delete)] == [200, 200, 200], get.json()
    sent = seen[0]
    assert sent["x-security-token"] == "sts-token" and sent["x-project-id"] == "p1"
    assert "host;x-project-id;x-sdk-date;x-security-token" in sent["authorization"]
    assert "content-type;host" in seen[1]["authorization"]


def test_aksk_auth_signs_afresh_on_every_send() -> None:
    clock, seen = _Clock(), list[httpx.Headers]()
    auth = AkSkAuth(AK, SK, clock=clock)
    with httpx.Client(auth=auth, transport=_verifying_transport(clock, seen)) as client:
        request = client.build_request("DELETE", "https://sdrs.example.com/v1/p/jobs/1")
        first = client.send(request)
        second = client.send(request)  # a retry of the same request object
    assert first.status_code == second.status_code == 200
    assert [h["x-sdk-date"] for h in seen] == ["20240501T120100Z", "20240501T120200Z"]
    assert seen[0]["authorization"] != seen[1]["authorization"]


def test_aksk_auth_works_with_async_client() -> None:
    clock, seen = _Clock(), list[httpx.Headers]()

    async def run() -> int:
        transport = _verifying_transport(clock, seen)
        async with httpx.AsyncClient(auth=AkSkAuth(AK, SK, clock=clock), transport=transport) as c:
            response = await c.post("https://sdrs.example.com/v1/p", content=b"payload")
            return response.status_code

    assert asyncio.run(run()) == 200


def _recording(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    return httpx.MockTransport(handler)


def test_aksk_auth_converts_clock_to_utc() -> None:
    tz = datetime.now().astimezone().tzinfo
    local = datetime(2024, 5, 1, 14, 0, tzinfo=UTC).astimezone(tz)
    seen: list[httpx.Request] = []
    transport = _recording(seen)
    with httpx.Client(auth=AkSkAuth(AK, SK, clock=lambda: local), transport=transport) as c:
        c.get("https://h/")
    assert seen[0].headers["x-sdk-date"] == "20240501T140000Z"


def test_token_auth_sets_header() -> None:
    seen: list[httpx.Request] = []
    transport = _recording(seen)
    with httpx.Client(auth=TokenAuth("iam-token-value"), transport=transport) as client:
        client.delete("https://h/v1/p/task-center/failure-jobs/x")
    assert seen[0].headers["x-auth-token"] == "iam-token-value"


def test_reprs_hold_no_secret() -> None:
    secrets = ["TopSecretSkValue123", "sts-security-token-xyz", "iam-token-value"]
    aksk = AkSkAuth("AKIDEXAMPLE42", secrets[0], security_token=secrets[1], project_id="p")
    token = TokenAuth(secrets[2])
    for text in (repr(aksk), str(aksk), f"{aksk}", repr(token), str(token), repr([aksk, token])):
        assert not any(secret in text for secret in secrets), text
    assert "AkSkAuth" in repr(aksk) and "TokenAuth" in repr(token)


def test_auth_requires_credentials() -> None:
    with pytest.raises(ValueError):
        AkSkAuth("", SK)
    with pytest.raises(ValueError):
        TokenAuth("")
