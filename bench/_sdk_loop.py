"""The script a user would otherwise write: a sequential sweep over the official SDK.

``python -m bench._sdk_loop URL PROJECT_ID AK SK [--retention-days 7] [--retry-throttled]``
lists the
protection groups, lists the failed tasks of the top level and of every group
(limit 1000, offset paging until a short page), deletes every task whose
``begin_time`` is older than the retention, one call at a time, and prints one
JSON line: wall time, calls, deletions.

SDK configuration for the loopback stand-in: ``HttpConfig.get_default_config()``
unchanged. The SDK keeps an endpoint that starts with ``http`` as given (it
only prefixes ``https://`` to bare host names), so plain HTTP needs nothing
special; ``ignore_ssl_verification`` only matters for https endpoints and is
left at its default. Signing is the SDK's own (SDK-HMAC-SHA256), verified by
the stand-in.

``--retry-throttled``: what a user of the SDK does against a throttling gateway, the
SDK's own retry (``invoker.with_retry``: 429s retried up to 10 times with its
equal-jitter exponential backoff, 10 ms base); the SDK has no rate limiter.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ServiceResponseException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.retry.backoff_strategy import BackoffStrategies
from huaweicloudsdksdrs.v1 import (
    DeleteFailureJobRequest,
    ListFailureJobsRequest,
    ListProtectionGroupsRequest,
    SdrsClient,
)

PAGE = 1000


def _throttled(response: Any, exc: Any) -> bool:
    return isinstance(exc, ServiceResponseException) and exc.status_code == 429


def _call(invoker: Any, retry: bool) -> Any:
    if retry:
        invoker = invoker.with_retry(_throttled, 10, BackoffStrategies.EQUAL_JITTER)
    return invoker.invoke()


def _expired(begin_time: str | None, cutoff: datetime) -> bool:
    if not begin_time:
        return False
    try:
        moment = datetime.strptime(begin_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return False
    return moment < cutoff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._sdk_loop")
    parser.add_argument("url")
    parser.add_argument("project_id")
    parser.add_argument("ak")
    parser.add_argument("sk")
    parser.add_argument("--retention-days", type=float, default=7.0)
    parser.add_argument("--retry-throttled", action="store_true")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    cpu_started = time.process_time()
    config = HttpConfig.get_default_config()
    client = (
        SdrsClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(args.ak, args.sk, args.project_id))
        .with_endpoints([args.url])
        .build()
    )
    cutoff = datetime.now(UTC) - timedelta(days=args.retention_days)
    retry = args.retry_throttled
    calls = 0
    listed = 0
    deleted = 0

    groups = []
    offset = 0
    while True:  # bounded: stops at the first short page
        calls += 1
        page = _call(client.list_protection_groups_invoker(
            ListProtectionGroupsRequest(limit=PAGE, offset=offset)), retry).server_groups or []
        groups += [g.id for g in page]
        if len(page) < PAGE:
            break
        offset += len(page)

    for group_id in [None, *groups]:
        records: list[Any] = []
        offset = 0
        while True:  # bounded: stops at the first short page
            calls += 1
            request = ListFailureJobsRequest(limit=PAGE, offset=offset)
            if group_id is not None:
                request.server_group_id = group_id
            page = _call(client.list_failure_jobs_invoker(request), retry).failure_jobs or []
            records += page
            if len(page) < PAGE:
                break
            offset += len(page)
        listed += len(records)
        for record in records:
            if _expired(record.begin_time, cutoff):
                calls += 1
                _call(client.delete_failure_job_invoker(
                    DeleteFailureJobRequest(failure_job_id=record.resource_id)), retry)
                deleted += 1

    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    print(json.dumps({"wall": wall, "cpu": cpu, "calls": calls, "listed": listed,
                      "deleted": deleted, "groups": len(groups)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
