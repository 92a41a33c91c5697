"""Configuration from the environment, read once per process with pydantic-settings.

Every variable is documented in docs/configuration.md. A bad value fails
here, at start-up, with one line naming the variable and never its value.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from failjob_reaper.errors import ConfigError

_EXTENSION_NAME = re.compile(r"[a-z0-9]{1,20}")
CONTEXT_ATTRIBUTES = frozenset({
    "id", "source", "specversion", "type", "datacontenttype", "dataschema", "subject", "time",
    "traceparent", "tracestate",
})
"""What an outcome says itself (CloudEvents' context attributes, and the distributed-tracing
extension it copies from its input): K_CE_OVERRIDES adds extensions, never rewrites these."""
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
# SMN topic URN: urn:smn:{region}:{project id}:{topic name (1-255: letters, digits, - _)}.
_TOPIC_URN = re.compile(
    r"urn:smn:[a-z0-9-]{1,64}:[A-Za-z0-9]{1,64}:[A-Za-z0-9][A-Za-z0-9_-]{0,254}"
)


def _env(*names: str) -> Any:
    return Field(validation_alias=AliasChoices(*names) if len(names) > 1 else names[0])


class Settings(BaseSettings):
    """All settings; attribute names are short, the environment names are the aliases."""

    model_config = SettingsConfigDict(
        env_ignore_empty=True, extra="ignore", frozen=True, populate_by_name=False,
        # NaN passes no bound check with a message that makes sense ("should be <= 300"):
        # refuse NaN and infinities as such.
        allow_inf_nan=False,
    )

    # SDRS API
    endpoint: str = Field(validation_alias="SDRS_ENDPOINT")
    project_id: str = Field(
        validation_alias=AliasChoices(
            "SDRS_PROJECT_ID", "HUAWEICLOUD_SDK_PROJECT_ID", "RUNTIME_PROJECT_ID"
        )
    )
    auth_token: SecretStr | None = Field(None, validation_alias="SDRS_AUTH_TOKEN")
    access_key: SecretStr | None = Field(None, validation_alias="HUAWEICLOUD_SDK_AK")
    secret_key: SecretStr | None = Field(None, validation_alias="HUAWEICLOUD_SDK_SK")
    security_token: SecretStr | None = Field(
        None, validation_alias="HUAWEICLOUD_SDK_SECURITY_TOKEN"
    )
    failure_job_id_field: str = Field("resource_id", validation_alias="SDRS_FAILURE_JOB_ID_FIELD")
    request_timeout: float = Field(10.0, gt=0, le=300, validation_alias="SDRS_REQUEST_TIMEOUT")
    max_attempts: int = Field(5, ge=1, le=20, validation_alias="SDRS_MAX_ATTEMPTS")
    retry_deadline: float = Field(30.0, gt=0, le=900, validation_alias="SDRS_RETRY_DEADLINE")
    backoff_initial: float = Field(0.5, ge=0, le=60, validation_alias="SDRS_BACKOFF_INITIAL")
    backoff_max: float = Field(8.0, ge=0, le=300, validation_alias="SDRS_BACKOFF_MAX")
    max_connections: int = Field(32, ge=1, le=512, validation_alias="SDRS_MAX_CONNECTIONS")
    # One answer's body at most (a 1000-record page of the stand-in is 0.4 MB): past it the
    # listing is incomplete (SDRS.ResponseTooLarge), memory never holds more.
    max_response_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024,
                                    validation_alias="SDRS_MAX_RESPONSE_BYTES")

    # Policy
    policy_file: str | None = Field(None, validation_alias="RETENTION_POLICY_FILE")
    dry_run: bool = Field(False, validation_alias="RETENTION_DRY_RUN")

    # Sweeps
    sweep_concurrency: int = Field(8, ge=1, le=128, validation_alias="SWEEP_CONCURRENCY")
    sweep_rate_limit: float = Field(50.0, ge=0, validation_alias="SWEEP_RATE_LIMIT")
    sweep_deadline: float = Field(240.0, gt=0, le=86400, validation_alias="SWEEP_DEADLINE")
    sweep_emit_retained: bool = Field(False, validation_alias="SWEEP_EMIT_RETAINED")
    sweep_max_task_events: int = Field(
        1000, ge=0, le=1_000_000, validation_alias="SWEEP_MAX_TASK_EVENTS")
    """Per-task ``would_delete`` events one dry-run sweep sends; the summary counts all."""
    listing_max_age: float = Field(60.0, gt=0, le=3600, validation_alias="LISTING_MAX_AGE")
    event_deadline: float = Field(60.0, gt=0, le=900, validation_alias="EVENT_DEADLINE")

    # State shared by every instance (docs/state.md)
    state_url: SecretStr = Field(SecretStr("memory://"), validation_alias="STATE_URL")
    """A Redis URL may carry the password: a secret (never logged, from the Knative Secret)."""

    # Outcomes
    sink: str | None = Field(None, validation_alias="K_SINK")
    ce_overrides: dict[str, Any] | None = Field(None, validation_alias="K_CE_OVERRIDES")
    outcome_source: str = Field("failjob-reaper", min_length=1, validation_alias="OUTCOME_SOURCE")
    sink_timeout: float = Field(5.0, gt=0, le=120, validation_alias="OUTCOME_SINK_TIMEOUT")
    sink_attempts: int = Field(3, ge=1, le=10, validation_alias="OUTCOME_SINK_ATTEMPTS")

    # Huawei Cloud outputs (docs/huawei-cloud.md)
    eg_endpoint: str | None = Field(None, validation_alias="EG_ENDPOINT")
    eg_channel_id: str | None = Field(None, validation_alias="EG_CHANNEL_ID")
    smn_endpoint: str | None = Field(None, validation_alias="SMN_ENDPOINT")
    smn_topic_urn: str | None = Field(None, validation_alias="SMN_TOPIC_URN")
    smn_max_per_hour: int = Field(6, ge=1, le=1000, validation_alias="SMN_MAX_MESSAGES_PER_HOUR")

    # Input event types
    type_job_failed: str = Field(
        "sdrs.job.failed", min_length=1, validation_alias="EVENT_TYPE_JOB_FAILED"
    )
    type_expired: str = Field(
        "sdrs.failurejob.expired", min_length=1, validation_alias="EVENT_TYPE_EXPIRED"
    )
    type_sweep: str = Field(
        "sdrs.failurejob.sweep", min_length=1, validation_alias="EVENT_TYPE_SWEEP"
    )
    event_max_body_bytes: int = Field(
        4_194_304, ge=65_536, le=67_108_864, validation_alias="EVENT_MAX_BODY_BYTES"
    )
    """The largest input event (on_event's request body; a FunctionGraph payload): an
    EventGrid envelope of 100 CTS traces of 40 KB fits the default, 4 MiB."""

    # Manual HTTP API
    retry_api_token: SecretStr | None = Field(None, validation_alias="RETRY_API_TOKEN")
    http_max_body_bytes: int = Field(
        65536, ge=256, le=10_485_760, validation_alias="HTTP_MAX_BODY_BYTES"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias="LOG_LEVEL"
    )
    log_format: Literal["json", "text"] | None = Field(None, validation_alias="LOG_FORMAT")
    """None: JSON under a platform, text for the CLI (the entry point decides)."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http(s) URL such as https://sdrs.ap-southeast-3.myhuaweicloud.com"
            )
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("must use https unless it is a loopback address")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        return value.rstrip("/")

    @field_validator("eg_endpoint", "smn_endpoint")
    @classmethod
    def _service_endpoint(cls, value: str | None) -> str | None:
        # These requests carry the deployment's credentials: https, unless loopback.
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an https URL such as "
                             "https://eg.ap-southeast-3.myhuaweicloud.com")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("must use https unless it is a loopback address")
        if parts.query or parts.fragment or parts.path.strip("/"):
            raise ValueError("must be a base URL, without path, query or fragment")
        return value.rstrip("/")

    @field_validator("eg_channel_id")
    @classmethod
    def _channel_is_token(cls, value: str | None) -> str | None:
        from failjob_reaper.ids import is_valid_id

        if value is not None and not is_valid_id(value):
            raise ValueError("must be the channel's id: 1-64 letters, digits, '-' or '_'")
        return value

    @field_validator("smn_topic_urn")
    @classmethod
    def _topic_urn(cls, value: str | None) -> str | None:
        if value is not None and not _TOPIC_URN.fullmatch(value):
            raise ValueError("must look like urn:smn:<region>:<project_id>:<topic name>")
        return value

    @field_validator("project_id")
    @classmethod
    def _project_is_token(cls, value: str) -> str:
        from failjob_reaper.ids import is_valid_id

        if not is_valid_id(value):
            raise ValueError("must be 1-64 letters, digits, '-' or '_'")
        return value

    @field_validator("failure_job_id_field")
    @classmethod
    def _field_name(cls, value: str) -> str:
        if not _FIELD_NAME.fullmatch(value):
            raise ValueError("must be a record field name such as resource_id or job_id")
        return value

    @field_validator("retry_api_token")
    @classmethod
    def _token_is_strong(cls, value: SecretStr | None) -> SecretStr | None:
        # A guessable bearer token would open the mutating API; refuse it at start-up.
        if value is not None:
            secret = value.get_secret_value()
            if secret != secret.strip() or len(secret) < 16:
                raise ValueError("must be at least 16 characters, without surrounding spaces")
        return value

    @field_validator("state_url")
    @classmethod
    def _state_url(cls, value: SecretStr) -> SecretStr:
        # Whole, now: a URL the Redis client would refuse at the first event must stop
        # the start (docs: "State and many instances").
        from failjob_reaper.state._store import check_state_url

        check_state_url(value.get_secret_value())
        return value

    @field_validator("sink")
    @classmethod
    def _sink_is_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("ce_overrides", mode="before")
    @classmethod
    def _overrides_json(cls, value: object) -> object:
        # The environment source parses JSON itself; a plain mapping passed in does not.
        if isinstance(value, str):
            import json

            try:
                return json.loads(value)
            except ValueError:
                raise ValueError("must be JSON") from None
        return value

    @field_validator("ce_overrides")
    @classmethod
    def _overrides_shape(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        extensions = value.get("extensions", {})
        if set(value) - {"extensions"} or not isinstance(extensions, dict):
            raise ValueError('must look like {"extensions": {"name": "value"}}')
        for name, ext in extensions.items():
            if not _EXTENSION_NAME.fullmatch(name) or not isinstance(ext, str | int | bool):
                raise ValueError(f"extension {name!r}: lower-case letters and digits, scalar value")
            if name in CONTEXT_ATTRIBUTES:
                raise ValueError(f"extension {name!r} is an attribute the outcome sets itself; "
                                 "overrides may only add extensions")
        # Sent as ce- headers (binary mode): text, as CloudEvents' HTTP binding writes it.
        return {"extensions": {name: str(ext).lower() if isinstance(ext, bool) else str(ext)
                               for name, ext in extensions.items()}}

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(urlsplit(self.endpoint).hostname or "")

    @property
    def credential_kind(self) -> Literal["token", "aksk", "none"]:
        if self.auth_token is not None:
            return "token"
        if self.access_key is not None:
            return "aksk"
        return "none"

    def check_credentials(self, *, context_credentials: bool = False) -> None:
        """Exactly one credential kind, unless loopback or the platform supplies one."""
        has_token = self.auth_token is not None
        has_ak, has_sk = self.access_key is not None, self.secret_key is not None
        if has_ak != has_sk:
            missing = "HUAWEICLOUD_SDK_SK" if has_ak else "HUAWEICLOUD_SDK_AK"
            raise ConfigError(f"{missing}: required with the other half of the AK/SK pair")
        if self.security_token is not None and not has_ak:
            raise ConfigError(
                "HUAWEICLOUD_SDK_SECURITY_TOKEN: only valid with "
                "HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK"
            )
        if has_token and has_ak:
            raise ConfigError(
                "SDRS_AUTH_TOKEN: set either it or HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK, not both"
            )
        if not (has_token or has_ak or self.is_loopback or context_credentials):
            raise ConfigError(
                "SDRS_AUTH_TOKEN: required, or HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK"
            )
        self.check_outputs(has_credentials=has_token or has_ak or context_credentials)

    def check_outputs(self, *, has_credentials: bool) -> None:
        """EventGrid and SMN settings come in pairs, and need credentials unless loopback."""
        pairs = (("EG_ENDPOINT", self.eg_endpoint, "EG_CHANNEL_ID", self.eg_channel_id),
                 ("SMN_ENDPOINT", self.smn_endpoint, "SMN_TOPIC_URN", self.smn_topic_urn))
        for first, first_value, second, second_value in pairs:
            if (first_value is None) != (second_value is None):
                given, missing = (first, second) if first_value is not None else (second, first)
                raise ConfigError(f"{missing}: required with {given}")
            if first_value is not None and not has_credentials and not _is_loopback(
                urlsplit(first_value).hostname or ""
            ):
                raise ConfigError(
                    f"{first}: needs credentials (SDRS_AUTH_TOKEN or HUAWEICLOUD_SDK_AK/_SK)"
                )


    def check_consistency(self, environ: Mapping[str, str]) -> None:
        """Refuse settings that contradict each other (docs/configuration.md), naming one
        variable."""
        if self.backoff_initial > self.backoff_max:
            raise ConfigError(
                f"SDRS_BACKOFF_INITIAL: {self.backoff_initial:g} is above "
                f"SDRS_BACKOFF_MAX {self.backoff_max:g}; the first wait cannot exceed the cap"
            )
        ours, sdks = environ.get("SDRS_PROJECT_ID"), environ.get("HUAWEICLOUD_SDK_PROJECT_ID")
        if ours and sdks and ours != sdks:
            raise ConfigError(
                "SDRS_PROJECT_ID: differs from HUAWEICLOUD_SDK_PROJECT_ID; "
                "set one of them, or both to the same project"
            )
        self._check_event_types()

    def _check_event_types(self) -> None:
        from failjob_reaper.events import PING_TYPE
        from failjob_reaper.outcomes import OUTCOMES, SWEEP_COMPLETED, TYPE_PREFIX

        fixed = {PING_TYPE: "the PingSource's type, which sweeps already"}
        fixed.update({TYPE_PREFIX + name: "an outcome type (the function would consume its "
                      "own outcomes)" for name in (*OUTCOMES, SWEEP_COMPLETED)})
        seen: dict[str, str] = {}
        for variable, value in (("EVENT_TYPE_JOB_FAILED", self.type_job_failed),
                                ("EVENT_TYPE_EXPIRED", self.type_expired),
                                ("EVENT_TYPE_SWEEP", self.type_sweep)):
            if value in seen:
                raise ConfigError(f"{variable}: the same type as {seen[value]}; "
                                  "each input type needs a name of its own")
            if value in fixed:
                raise ConfigError(f"{variable}: {value} is {fixed[value]}")
            seen[value] = variable


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def env_names(name: str) -> tuple[str, ...]:
    """The environment variables of one settings field, the preferred first."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(str(choice) for choice in alias.choices)
    return (alias,) if isinstance(alias, str) else ()


ENV_VARS: frozenset[str] = frozenset(
    variable for name in Settings.model_fields for variable in env_names(name)
)
"""Every environment variable the settings read (infra tests check manifests against it)."""


def load_settings(
    environ: Mapping[str, str] | None = None, *, context_credentials: bool = False
) -> Settings:
    """Read and validate the settings; raise ConfigError with one line naming the variable."""
    try:
        if environ is None:
            settings = Settings()
        else:
            settings = Settings.model_validate(
                {k: v for k, v in environ.items() if k in ENV_VARS and v != ""}
            )
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    settings.check_credentials(context_credentials=context_credentials)
    settings.check_consistency(os.environ if environ is None else environ)
    return settings


def _one_line(exc: ValidationError) -> str:
    # Name the variable and the rule it breaks; never echo the input (it may be a secret).
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "settings"
        problems.append(f"{name}: {_message(error['type'], error.get('ctx') or {}, error['msg'])}")
    return "; ".join(problems)


_MESSAGES = {
    "missing": "required",
    "finite_number": "must be a finite number",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "literal_error": "must be {expected}",
    "json_invalid": "must be JSON",
}
"""pydantic's error types in the words of the rest of the settings' messages."""


def _message(kind: str, ctx: Mapping[str, Any], fallback: str) -> str:
    template = _MESSAGES.get(kind)
    if template is not None:
        try:
            return template.format(**{k: f"{v:g}" if isinstance(v, float) else v
                                      for k, v in ctx.items()})
        except (KeyError, IndexError):
            pass
    message = fallback.removeprefix("Value error, ")
    return "must be" + message.removeprefix("Input should be") if message.startswith(
        "Input should be") else message
