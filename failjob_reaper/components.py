"""Wiring: settings -> client, policy, publisher, reaper, sweeper. Built once per process.

Cold start: only what the configuration uses is imported. The EventGrid and fan-out
emitters, the SMN alerts and the sweep machinery are imported when configured (or,
the sweeper, on the first sweep), so an event function without them never loads them.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from failjob_reaper.errors import ConfigError
from failjob_reaper.events import EventTypes
from failjob_reaper.exactly_once import ExactlyOnce, Timing
from failjob_reaper.logs import configure_from_settings
from failjob_reaper.outcomes import Publisher
from failjob_reaper.policy import Policy, PolicyError, default_policy, load_policy
from failjob_reaper.reaper import Clock, Reaper, ReaperConfig, utc_now
from failjob_reaper.scopes import LookupIndex
from failjob_reaper.sdrs import (
    AkSkAuth,
    RetryPolicy,
    RotatingAkSkAuth,
    TaskCenterClient,
    TokenAuth,
    limiter_for,
)
from failjob_reaper.settings import Settings, load_settings
from failjob_reaper.state import StateStore, open_store

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from failjob_reaper.alerts import Alerts
    from failjob_reaper.outcomes import Emitter
    from failjob_reaper.sdrs import RateLimiter
    from failjob_reaper.sweep import Sweeper

CONFIG_ERROR_PREFIX = "failjob-reaper: configuration error: "
"""Start of the one line a configuration error is reported with (then the variable)."""


@dataclass(frozen=True)
class Components:
    """Everything an entry point needs; main.py holds one per process."""

    settings: Settings
    reaper: Reaper
    types: EventTypes
    state: StateStore
    """Shared by every instance of the deployment (STATE_URL); memory:// is this process."""
    context_auth: RotatingAkSkAuth | None = None
    """Set when the SDRS calls are signed with credentials the platform hands over per
    invocation (FunctionGraph agency); the entry point must ``update()`` it each time."""
    alerts: Alerts | None = None
    """Operator alerts through SMN (SMN_ENDPOINT, SMN_TOPIC_URN); None without them."""
    sweep_rate: RateLimiter | None = None
    """The sweeps' side of the deployment's one adaptive rate (they yield to single
    events); None when SWEEP_RATE_LIMIT=0."""

    @functools.cached_property
    def sweeper(self) -> Sweeper:
        """Built on first use (a sweep, a preview): starting for events does not import
        the sweep machinery. (Two threads racing here on a Python without
        cached_property's lock would build two equal sweepers; either serves.)"""
        from failjob_reaper.sweep import Sweeper, SweepLimits

        settings = self.settings
        return Sweeper(
            self.reaper,
            SweepLimits(
                concurrency=settings.sweep_concurrency,
                deadline=settings.sweep_deadline,
                emit_retained=settings.sweep_emit_retained,
                max_task_events=settings.sweep_max_task_events,
            ),
            rate_limiter=self.sweep_rate,
        )


def build_components(
    settings: Settings,
    *,
    auth: httpx.Auth | None = None,
    transport: httpx.BaseTransport | None = None,
    emitter: Emitter | None = None,
    clock: Clock = utc_now,
    state: StateStore | None = None,
    index: bool = True,
    adjust_policy: Callable[[Policy], Policy] | None = None,
) -> Components:
    """Build the process's objects; raise ConfigError for a bad policy file.

    ``index``: keep the lookup index (a process that lives for one command, the CLI,
    would only pay for it: it never asks it). ``adjust_policy``: a change to the loaded
    policy for this process only (the CLI's ``--max-deletions``)."""
    policy = _policy(settings)
    if adjust_policy is not None:
        policy = adjust_policy(policy)
    if state is None:
        state = open_store(settings.state_url.get_secret_value(),
                           namespace=f"fjr:{settings.project_id}:")
    if auth is None:
        auth = auth_from_settings(settings)
    # One adaptive rate for every SDRS request of the deployment (docs/safety.md).
    limiter = limiter_for(settings.sweep_rate_limit, state)
    client = TaskCenterClient(
        settings.endpoint,
        settings.project_id,
        auth=auth,
        timeout=settings.request_timeout,
        retry=RetryPolicy(
            max_attempts=settings.max_attempts,
            deadline=settings.retry_deadline,
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
        ),
        max_connections=max(settings.max_connections, settings.sweep_concurrency),
        rate_limiter=limiter,
        transport=transport,
        max_response_bytes=settings.max_response_bytes,
    )
    if emitter is None:
        emitter = outcome_emitter(settings, auth)
    publisher = Publisher(emitter, source=settings.outcome_source, overrides=settings.ce_overrides,
                          state=state, send_window=_send_window(settings))
    config = ReaperConfig(
        project_id=settings.project_id,
        id_field=settings.failure_job_id_field,
        dry_run=settings.dry_run,
        listing_max_age=settings.listing_max_age,
        event_deadline=settings.event_deadline,
        list_concurrency=settings.sweep_concurrency,
    )
    reaper = Reaper(client, policy, publisher, config, clock=clock,
                    shared=ExactlyOnce(state, _timing(settings)))
    if index:
        reaper.index = LookupIndex(state, settings.failure_job_id_field,
                                   view_max_age=settings.listing_max_age, clock=clock)
    types = EventTypes(settings.type_job_failed, settings.type_expired, settings.type_sweep)
    reaper.alerts = smn_alerts(settings, auth, state)
    return Components(settings, reaper, types, state, alerts=reaper.alerts,
               sweep_rate=limiter.bulk() if limiter is not None else None)


def outcome_emitter(settings: Settings, auth: httpx.Auth | None) -> Emitter:
    """K_SINK and/or the EventGrid channel (both: each event to both); else stdout."""
    emitters: list[Emitter] = []
    if settings.sink:
        from failjob_reaper.outcomes import SinkEmitter

        emitters.append(SinkEmitter(settings.sink, timeout=settings.sink_timeout,
                                    attempts=settings.sink_attempts))
    if settings.eg_endpoint and settings.eg_channel_id:
        from failjob_reaper.outcomes import EventGridEmitter

        # Signed with the deployment's credentials, like the SDRS calls (docs/huawei-cloud.md).
        emitters.append(EventGridEmitter(settings.eg_endpoint, settings.project_id,
                                         settings.eg_channel_id, auth=auth,
                                         timeout=settings.sink_timeout,
                                         attempts=settings.sink_attempts))
    if not emitters:
        from failjob_reaper.outcomes import StdoutEmitter

        return StdoutEmitter()
    if len(emitters) == 1:
        return emitters[0]
    from failjob_reaper.outcomes import FanoutEmitter

    return FanoutEmitter(emitters)


def smn_alerts(settings: Settings, auth: httpx.Auth | None, state: StateStore) -> Alerts | None:
    if not (settings.smn_endpoint and settings.smn_topic_urn):
        return None
    from failjob_reaper.alerts import Alerts, SmnPublisher

    publisher = SmnPublisher(settings.smn_endpoint, settings.project_id, settings.smn_topic_urn,
                             auth=auth, timeout=settings.sink_timeout)
    return Alerts(publisher, state, max_per_hour=settings.smn_max_per_hour)


def _send_window(settings: Settings) -> float:
    """The longest one outcome POST can take: every attempt times out, with backoff."""
    from failjob_reaper.delivery import send_window

    return send_window(settings.sink_attempts, settings.sink_timeout)


def _timing(settings: Settings) -> Timing:
    """How long in-progress records and the sweep lease last: the longest the work can
    take (a crashed instance's records expire then, and another instance takes over)."""
    task = 3 * settings.retry_deadline + _send_window(settings) + 2.0
    return Timing(task_seconds=task, sweep_seconds=settings.sweep_deadline + task)


def auth_from_settings(settings: Settings) -> httpx.Auth | None:
    if settings.auth_token is not None:
        return TokenAuth(settings.auth_token.get_secret_value())
    if settings.access_key is not None and settings.secret_key is not None:
        return AkSkAuth(
            settings.access_key.get_secret_value(),
            settings.secret_key.get_secret_value(),
            security_token=(
                settings.security_token.get_secret_value() if settings.security_token else None
            ),
            project_id=settings.project_id,
        )
    return None


def _policy(settings: Settings) -> Policy:
    if settings.policy_file is None:
        return default_policy()
    try:
        return load_policy(settings.policy_file)
    except PolicyError as exc:
        raise ConfigError("RETENTION_POLICY_FILE: " + "; ".join(exc.problems)) from None


def load_components(*, context_credentials: bool = False) -> Components:
    """Build from the environment; raise ConfigError naming the variable.

    ``context_credentials``: the platform hands over credentials per invocation
    (FunctionGraph: the agency's temporary AK/SK/token). Then no credential in the
    environment is fine, and the app signs with a ``RotatingAkSkAuth`` (``app.context_auth``)
    that the entry point updates; credentials in the environment, when present, win.
    """
    settings = load_settings(context_credentials=context_credentials)
    context_auth = None
    if context_credentials and settings.credential_kind == "none":
        context_auth = RotatingAkSkAuth(project_id=settings.project_id)
    app = build_components(settings, auth=context_auth)
    configure_from_settings(settings)
    return replace(app, context_auth=context_auth)


def load_components_or_exit() -> Components:
    """For entry points: build from the environment or stop with one clear line."""
    try:
        return load_components()
    except ConfigError as exc:
        print(f"{CONFIG_ERROR_PREFIX}{exc}", file=sys.stderr)
        raise SystemExit(2) from None
