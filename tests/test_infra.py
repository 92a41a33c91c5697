"""infra/ stays consistent with the code: container image, Knative manifests, Terraform.

No network, no cluster, no cloud. ``main.py`` is read with ``ast``, never imported
(importing it builds the app from the environment). Checks that need a local
tool (``kubectl kustomize``, ``terraform fmt``) skip when the tool is absent.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import shlex
import shutil
import subprocess
import typing
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from hcl2.utils import SerializationOptions
from pydantic import AliasChoices, SecretStr
from yamllint import config as yamllint_config
from yamllint import linter as yamllint_linter

from failjob_reaper.errors import ConfigError
from failjob_reaper.settings import ENV_VARS, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
KNATIVE = INFRA / "knative"
TERRAFORM = INFRA / "functiongraph"
DOCKERFILE = INFRA / "container" / "Dockerfile"
MAIN_PY = ROOT / "main.py"

IMAGE_NAME = "failjob-reaper"  # the image name kustomize replaces (kustomization.yaml images)
EVENTS_SERVICE = "failjob-reaper-events"
HTTP_SERVICE = "failjob-reaper-http"
DEAD_LETTER_SERVICE = "failjob-reaper-dead-letters"
SECRET_NAME = "failjob-reaper-credentials"

# Variables a manifest may set that are not settings of the function: they
# configure functions-framework (target, signature, source) or the platform
# injects them (PORT by Knative; K_SINK / K_CE_OVERRIDES by the SinkBinding,
# which are also settings).
PLATFORM_ENV = frozenset(
    {
        "PORT",
        "FUNCTION_TARGET",
        "FUNCTION_SIGNATURE_TYPE",
        "FUNCTION_SOURCE",
        "K_SINK",
        "K_CE_OVERRIDES",
    }
)
# functions-framework target -> signature type it is served with.
SIGNATURES = {"on_event": "cloudevent", "on_http": "http"}
FUNCTIONGRAPH_HANDLER = "handler"

# What the function emits (the outcome types). No Trigger may route these back to on_event.
OUTCOME_TYPES = frozenset(
    f"sdrs.failurejob.{name}"
    for name in (
        "deleted",
        "already_deleted",
        "retained",
        "would_delete",
        "delete_failed",
        "rejected",
        "sweep_completed",
    )
)

# Every YAML file under infra/ -> the (apiVersion, kind) of each of its documents.
# None: not a Kubernetes object (checked by its own test). A new YAML file must be
# added here, so nothing under infra/ escapes the checks.
EXPECTED_DOCUMENTS: dict[str, list[tuple[str, str]] | None] = {
    "knative/namespace.yaml": [("v1", "Namespace")],
    "knative/broker.yaml": [("eventing.knative.dev/v1", "Broker")],
    "knative/service-events.yaml": [("serving.knative.dev/v1", "Service")],
    "knative/service-http.yaml": [("serving.knative.dev/v1", "Service")],
    "knative/service-dead-letters.yaml": [("serving.knative.dev/v1", "Service")],
    "knative/trigger.yaml": [("eventing.knative.dev/v1", "Trigger")] * 2,
    "knative/pingsource.yaml": [("sources.knative.dev/v1", "PingSource")],
    "knative/sinkbinding.yaml": [("sources.knative.dev/v1", "SinkBinding")] * 2,
    "knative/secret.example.yaml": [("v1", "Secret")],
    "knative/kustomization.yaml": [("kustomize.config.k8s.io/v1beta1", "Kustomization")],
    "knative/kustomizeconfig.yaml": None,  # kustomize transformer configuration
    "knative/policy.yaml": None,  # retention policy (README, "The retention policy")
}
# Files in infra/knative that are not kustomize resources.
NOT_RESOURCES = frozenset(
    {"kustomization.yaml", "kustomizeconfig.yaml", "policy.yaml", "secret.example.yaml"}
)

YAMLLINT_CONFIG = """
extends: default
rules:
  document-start: disable
  line-length:
    max: 120
"""

_HCL_OPTIONS = SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _yaml_files() -> list[Path]:
    # functiongraph/build/ is package.sh's output (git-ignored): a copy of the policy.
    build = TERRAFORM / "build"
    return sorted(
        p for p in INFRA.rglob("*")
        if p.suffix in (".yaml", ".yml") and p.is_file() and not p.is_relative_to(build)
    )


def _rel(path: Path) -> str:
    return path.relative_to(INFRA).as_posix()


@cache
def _documents(rel: str) -> list[Any]:
    with (INFRA / rel).open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def _objects(kind: str) -> list[dict[str, Any]]:
    """Every Kubernetes object of ``kind`` in the Knative manifests (kustomize resources)."""
    found: list[dict[str, Any]] = []
    for rel, expected in EXPECTED_DOCUMENTS.items():
        if expected is None or not rel.startswith("knative/") or rel.endswith("example.yaml"):
            continue
        found.extend(d for d in _documents(rel) if isinstance(d, dict) and d.get("kind") == kind)
    return found


def _services() -> dict[str, dict[str, Any]]:
    return {svc["metadata"]["name"]: svc for svc in _objects("Service")}


def _container(service: Mapping[str, Any]) -> dict[str, Any]:
    containers = service["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per Knative Service"
    container: dict[str, Any] = containers[0]
    return container


def _reaper_services() -> dict[str, dict[str, Any]]:
    """The Services that run the failjob-reaper image (not the dead-letter display)."""
    return {
        name: svc
        for name, svc in _services().items()
        if _container(svc)["image"].split(":")[0] == IMAGE_NAME
    }


def _env(service: Mapping[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = _container(service).get("env", [])
    return env


def _plain_env(service: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in _env(service) if "value" in e}


def _secret_refs(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    refs = {}
    for e in _env(service):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            refs[e["name"]] = ref
    return refs


def _example_secret() -> dict[str, str]:
    (secret,) = _documents("knative/secret.example.yaml")
    data: dict[str, str] = secret.get("stringData", {})
    return data


def _ref_target(ref: Mapping[str, Any]) -> tuple[str, str, str]:
    return (ref["apiVersion"], ref["kind"], ref["name"])


@cache
def _main_functions() -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Top-level functions of main.py, read with ast (importing main.py reads the environment)."""
    assert MAIN_PY.is_file(), f"{MAIN_PY} is missing: the entry points live there"
    tree = ast.parse(MAIN_PY.read_text(encoding="utf-8"), filename=str(MAIN_PY))
    return {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _declared_signature(function: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
    """The signature a functions-framework decorator declares, if any."""
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = ast.unparse(target)
        if name.endswith("cloud_event"):
            return "cloudevent"
        if name.endswith(".http") or name == "http":
            return "http"
    return None


def _settings_default(field: str) -> str:
    default = Settings.model_fields[field].default
    assert isinstance(default, str)
    return default


def _secret_settings() -> frozenset[str]:
    """Environment names of the settings typed SecretStr: they never go in plain config."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        annotation = field.annotation
        if annotation is SecretStr or SecretStr in typing.get_args(annotation):
            alias = field.validation_alias
            if isinstance(alias, str):
                names.add(alias)
            elif isinstance(alias, AliasChoices):
                names.update(str(choice) for choice in alias.choices)
    return frozenset(names)


# --- Terraform --------------------------------------------------------------


@cache
def _tf(name: str) -> dict[str, Any]:
    with (TERRAFORM / name).open(encoding="utf-8") as fh:
        parsed: dict[str, Any] = hcl2.load(fh, serialization_options=_HCL_OPTIONS)
    return parsed


def _tf_files() -> list[Path]:
    return sorted(TERRAFORM.glob("*.tf"))


def _tf_blocks(kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every ``resource`` or ``data`` block in the module."""
    for path in _tf_files():
        for block in _tf(path.name).get(kind, []):
            for type_name, by_name in block.items():
                for name, body in by_name.items():
                    yield type_name, name, body


def _tf_resource(type_name: str, name: str) -> dict[str, Any]:
    for t, n, body in _tf_blocks("resource"):
        if (t, n) == (type_name, name):
            return body
    raise AssertionError(f"resource {type_name}.{name} not found in {TERRAFORM}")


def _tf_variables() -> dict[str, dict[str, Any]]:
    variables: dict[str, dict[str, Any]] = {}
    for path in _tf_files():
        for block in _tf(path.name).get("variable", []):
            variables.update(block)
    return variables


def _tf_locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in _tf_files():
        for block in _tf(path.name).get("locals", []):
            merged.update(block)
    return merged


_WHOLE_REF = re.compile(r"^\$\{(var|local)\.([A-Za-z_][A-Za-z0-9_]*)\}$")
_INNER_REF = re.compile(r"\$\{(var|local)\.([A-Za-z_][A-Za-z0-9_]*)\}")
_CALL = re.compile(r"^\$\{(jsonencode|tostring)\((.*)\)\}$", re.DOTALL)


def _tf_eval(value: Any) -> Any:
    """Evaluate the small subset of HCL the checked values use, with variable defaults:
    ``var.x``, ``local.x``, ``"${var.x}-suffix"``, ``jsonencode(...)``, ``tostring(...)``,
    objects and tuples. Anything else (resource attributes, ...) is returned as is."""
    if isinstance(value, dict):
        return {k: _tf_eval(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tf_eval(v) for v in value]
    if not isinstance(value, str):
        return value
    whole = _WHOLE_REF.match(value)
    if whole:
        return _tf_eval(_tf_lookup(whole.group(1), whole.group(2)))
    call = _CALL.match(value)
    if call:
        function, argument = call.groups()
        inner = _tf_eval(hcl2.loads(f"x = {argument}", serialization_options=_HCL_OPTIONS)["x"])
        if function == "jsonencode":
            return json.dumps(inner)
        return json.dumps(inner) if isinstance(inner, bool) else str(inner)
    return _INNER_REF.sub(lambda m: str(_tf_eval(_tf_lookup(m.group(1), m.group(2)))), value)


def _tf_lookup(kind: str, name: str) -> Any:
    if kind == "var":
        variable = _tf_variables()[name]
        assert "default" in variable, f"var.{name} has no default to evaluate with"
        return variable["default"]
    return _tf_locals()[name]


# --- Dockerfile -----------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    result = []
    for line in logical:
        instruction, _, arguments = line.partition(" ")
        result.append((instruction.upper(), arguments.strip()))
    return result


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, arguments in _dockerfile_instructions():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments))
    return stages


def _env_assignments(arguments: str) -> dict[str, str]:
    pairs = {}
    for token in shlex.split(arguments):
        key, sep, value = token.partition("=")
        assert sep, f"ENV {arguments!r}: use the KEY=value form"
        pairs[key] = value
    return pairs


def _exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), (
        f"{arguments!r}: use the exec (JSON array) form"
    )
    return parsed


# ---------------------------------------------------------------------------
# YAML: lint, parse, kinds
# ---------------------------------------------------------------------------


def test_every_yaml_file_is_known() -> None:
    found = {_rel(p) for p in _yaml_files()}
    assert found == set(EXPECTED_DOCUMENTS), (
        "add new infra YAML files to EXPECTED_DOCUMENTS (and remove deleted ones)"
    )


@pytest.mark.parametrize("rel", sorted(EXPECTED_DOCUMENTS))
def test_yaml_passes_yamllint(rel: str) -> None:
    conf = yamllint_config.YamlLintConfig(YAMLLINT_CONFIG)
    text = (INFRA / rel).read_text(encoding="utf-8")
    problems = [
        f"{rel}:{p.line}:{p.column}: [{p.level}] {p.desc} ({p.rule})"
        for p in yamllint_linter.run(text, conf)
    ]
    assert problems == []


@pytest.mark.parametrize("rel", sorted(EXPECTED_DOCUMENTS))
def test_yaml_documents_have_the_expected_kind(rel: str) -> None:
    documents = _documents(rel)
    assert documents, f"{rel} is empty"
    expected = EXPECTED_DOCUMENTS[rel]
    if expected is None:
        assert all(isinstance(d, dict) and "kind" not in d for d in documents)
        return
    actual = [(d.get("apiVersion"), d.get("kind")) for d in documents]
    assert actual == expected
    for doc in documents:
        if doc["kind"] != "Kustomization":
            assert doc.get("metadata", {}).get("name"), f"{rel}: every object needs a name"


def test_kustomizeconfig_teaches_configmap_references() -> None:
    (config,) = _documents("knative/kustomizeconfig.yaml")
    assert set(config) == {"nameReference"}
    (ref,) = [r for r in config["nameReference"] if r["kind"] == "ConfigMap"]
    paths = {(f["group"], f["kind"], f["path"]) for f in ref["fieldSpecs"]}
    assert ("serving.knative.dev", "Service", "spec/template/spec/volumes/configMap/name") in paths


def test_example_policy_loads_with_the_real_loader() -> None:
    from failjob_reaper.policy import load_policy

    policy = load_policy(KNATIVE / "policy.yaml")
    assert "prod-*" in policy.holds.resource_names


# ---------------------------------------------------------------------------
# Knative: environment, targets, routing
# ---------------------------------------------------------------------------


def test_main_py_defines_every_entry_point() -> None:
    functions = _main_functions()
    missing = {*SIGNATURES, FUNCTIONGRAPH_HANDLER} - set(functions)
    assert not missing, f"main.py lacks top-level function(s) {sorted(missing)}"
    handler = functions[FUNCTIONGRAPH_HANDLER]
    assert len(handler.args.args) == 2, "FunctionGraph calls handler(event, context)"


def test_both_reaper_services_exist() -> None:
    services = _reaper_services()
    assert set(services) == {EVENTS_SERVICE, HTTP_SERVICE}
    assert DEAD_LETTER_SERVICE in _services()


@pytest.mark.parametrize(
    ("service_name", "target"), [(EVENTS_SERVICE, "on_event"), (HTTP_SERVICE, "on_http")]
)
def test_service_selects_a_real_target(service_name: str, target: str) -> None:
    service = _services()[service_name]
    env = _plain_env(service)
    container = _container(service)
    assert "command" not in container and "args" not in container, (
        "the target is chosen by FUNCTION_TARGET / FUNCTION_SIGNATURE_TYPE, not by args"
    )
    assert env["FUNCTION_TARGET"] == target
    assert env["FUNCTION_SIGNATURE_TYPE"] == SIGNATURES[target]
    functions = _main_functions()
    assert target in functions, f"main.py has no top-level {target}()"
    declared = _declared_signature(functions[target])
    assert declared in (None, SIGNATURES[target]), (
        f"main.py declares {target} as {declared}, the Service serves it as {SIGNATURES[target]}"
    )


@pytest.mark.parametrize("service_name", [EVENTS_SERVICE, HTTP_SERVICE])
def test_service_env_names_are_settings(service_name: str) -> None:
    names = [e["name"] for e in _env(_services()[service_name])]
    assert len(names) == len(set(names)), "duplicate env entries"
    unknown = set(names) - ENV_VARS - PLATFORM_ENV
    assert not unknown, f"not read by failjob_reaper.settings: {sorted(unknown)}"


@pytest.mark.parametrize("service_name", [EVENTS_SERVICE, HTTP_SERVICE])
def test_secrets_come_from_the_secret_only(service_name: str) -> None:
    service = _services()[service_name]
    secret_names = _secret_settings()
    plain = set(_plain_env(service))
    assert not plain & secret_names, "secrets must come from the Secret, not plain values"
    example_text = (KNATIVE / "secret.example.yaml").read_text(encoding="utf-8")
    for name, ref in _secret_refs(service).items():
        assert ref["name"] == SECRET_NAME
        assert ref["key"] == name, "Secret keys are named like the variables they feed"
        assert name in secret_names, f"{name} is not a secret setting"
        assert name in example_text, f"secret.example.yaml does not mention {name}"
        if not ref.get("optional", False):
            assert name in _example_secret(), f"required key {name} missing from the example"


def test_example_secret_keys_are_settings() -> None:
    (secret,) = _documents("knative/secret.example.yaml")
    assert secret["metadata"]["name"] == SECRET_NAME
    keys = set(_example_secret())
    assert keys <= _secret_settings()
    assert "RETRY_API_TOKEN" in keys


@pytest.mark.parametrize("service_name", [EVENTS_SERVICE, HTTP_SERVICE])
def test_service_env_is_a_valid_configuration(service_name: str) -> None:
    """The Service's env (+ the example Secret, + what the SinkBinding injects) passes the
    function's own start-up validation: URL, project id, ranges, one credential kind."""
    service = _services()[service_name]
    environ = _plain_env(service)
    secret = _example_secret()
    environ.update({name: secret[name] for name in _secret_refs(service) if name in secret})
    (binding,) = [
        b for b in _objects("SinkBinding") if b["spec"]["subject"]["name"] == service_name
    ]
    environ["K_SINK"] = "http://broker-ingress.knative-eventing.svc.cluster.local/ns/default"
    if "ceOverrides" in binding["spec"]:
        environ["K_CE_OVERRIDES"] = json.dumps(binding["spec"]["ceOverrides"])
    try:
        settings = load_settings(environ)
    except ConfigError as exc:  # pragma: no cover - the assertion message is the point
        pytest.fail(f"{service_name}: {exc}")
    assert settings.policy_file == environ["RETENTION_POLICY_FILE"]


@pytest.mark.parametrize("service_name", [EVENTS_SERVICE, HTTP_SERVICE])
def test_policy_file_is_the_mounted_configmap(service_name: str) -> None:
    service = _services()[service_name]
    path = Path(_plain_env(service)["RETENTION_POLICY_FILE"])
    (mount,) = [m for m in _container(service)["volumeMounts"] if m["name"] == "policy"]
    assert path.parent == Path(mount["mountPath"])
    assert path.name == "policy.yaml"  # the configMapGenerator key (its file name)
    (volume,) = [v for v in service["spec"]["template"]["spec"]["volumes"] if v["name"] == "policy"]
    (kustomization,) = _documents("knative/kustomization.yaml")
    generated = {g["name"]: g for g in kustomization["configMapGenerator"]}
    assert volume["configMap"]["name"] in generated
    assert "policy.yaml" in generated[volume["configMap"]["name"]]["files"]


@pytest.mark.parametrize("service_name", [EVENTS_SERVICE, HTTP_SERVICE])
def test_sweep_deadline_fits_in_the_request_timeout(service_name: str) -> None:
    service = _services()[service_name]
    deadline = float(
        _plain_env(service).get("SWEEP_DEADLINE", Settings.model_fields["sweep_deadline"].default)
    )
    timeout = service["spec"]["template"]["spec"].get("timeoutSeconds", 300)
    assert deadline < timeout, "a sweep must end (and report) before Knative cuts the request"


@pytest.mark.parametrize("service_name", [EVENTS_SERVICE, HTTP_SERVICE, DEAD_LETTER_SERVICE])
def test_services_run_locked_down(service_name: str) -> None:
    service = _services()[service_name]
    context = _container(service)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "limits" in _container(service)["resources"]
    if service_name != DEAD_LETTER_SERVICE:
        assert context["runAsUser"] == 10001  # the image's USER
        assert service["spec"]["template"]["spec"]["containerConcurrency"] > 0


def test_both_services_talk_to_the_same_project() -> None:
    envs = [_plain_env(svc) for svc in _reaper_services().values()]
    for name in ("SDRS_ENDPOINT", "SDRS_PROJECT_ID", "RETENTION_POLICY_FILE"):
        assert len({env[name] for env in envs}) == 1, f"{name} differs between the Services"


def test_triggers_route_exactly_the_single_task_input_types() -> None:
    triggers = _objects("Trigger")
    types = [t["spec"]["filter"]["attributes"]["type"] for t in triggers]
    assert sorted(types) == sorted(
        [_settings_default("type_job_failed"), _settings_default("type_expired")]
    )
    assert not set(types) & OUTCOME_TYPES, "an outcome type routed to on_event would loop"
    service_ids = {("serving.knative.dev/v1", "Service", name) for name in _services()}
    for trigger in triggers:
        spec = trigger["spec"]
        assert spec["broker"] == "default"
        assert set(spec["filter"]["attributes"]) == {"type"}, "exact match on type only"
        assert _ref_target(spec["subscriber"]["ref"]) == (
            "serving.knative.dev/v1",
            "Service",
            EVENTS_SERVICE,
        )
        delivery = spec["delivery"]
        assert delivery["retry"] == 5
        assert delivery["backoffPolicy"] == "exponential"
        assert delivery["backoffDelay"] == "PT1S"
        assert _ref_target(delivery["deadLetterSink"]["ref"]) in service_ids


def test_input_and_outcome_types_are_disjoint() -> None:
    inputs = {_settings_default(f) for f in ("type_job_failed", "type_expired", "type_sweep")}
    assert not inputs & OUTCOME_TYPES


def test_pingsource_sweeps_through_on_event_with_a_json_payload() -> None:
    (ping,) = _objects("PingSource")
    spec = ping["spec"]
    assert spec["schedule"] == "0 * * * *"
    assert spec["contentType"] == "application/json"
    payload = json.loads(spec["data"])
    assert isinstance(payload, dict)
    assert payload == {"dry_run": False}
    apiversion, kind, name = _ref_target(spec["sink"]["ref"])
    assert (apiversion, kind) == ("serving.knative.dev/v1", "Service")
    assert _plain_env(_services()[name])["FUNCTION_TARGET"] == "on_event"


def test_sinkbindings_send_every_outcome_to_the_broker() -> None:
    bindings = _objects("SinkBinding")
    subjects = set()
    (broker,) = _objects("Broker")
    for binding in bindings:
        subject = binding["spec"]["subject"]
        assert (subject["apiVersion"], subject["kind"]) == ("serving.knative.dev/v1", "Service")
        subjects.add(subject["name"])
        assert _ref_target(binding["spec"]["sink"]["ref"]) == (
            "eventing.knative.dev/v1",
            "Broker",
            broker["metadata"]["name"],
        )
    assert subjects == set(_reaper_services())
    assert all(t["spec"]["broker"] == broker["metadata"]["name"] for t in _objects("Trigger"))


def test_kustomization_lists_every_resource_file() -> None:
    (kustomization,) = _documents("knative/kustomization.yaml")
    present = {p.name for p in KNATIVE.glob("*.yaml")} - NOT_RESOURCES
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == present
    assert "secret.example.yaml" not in listed
    assert kustomization["namespace"] == "failjob-reaper"
    assert "kustomizeconfig.yaml" in kustomization["configurations"]
    assert [i["name"] for i in kustomization["images"]] == [IMAGE_NAME]


def test_kustomize_build_wires_the_hashed_policy_configmap() -> None:
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize")
    if kustomize:
        command = [kustomize, "build", str(KNATIVE)]
    elif kubectl:
        command = [kubectl, "kustomize", str(KNATIVE)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    (configmap,) = [d for d in rendered if d["kind"] == "ConfigMap"]
    hashed = configmap["metadata"]["name"]
    assert hashed.startswith("failjob-reaper-policy-")
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "failjob-reaper"
        if doc["kind"] == "Service" and doc["metadata"]["name"] in _reaper_services():
            volumes = doc["spec"]["template"]["spec"]["volumes"]
            assert {v["configMap"]["name"] for v in volumes if "configMap" in v} == {hashed}
            assert not _container(doc)["image"].startswith(f"{IMAGE_NAME}:")


# ---------------------------------------------------------------------------
# Terraform (FunctionGraph)
# ---------------------------------------------------------------------------


def test_terraform_files_parse() -> None:
    names = {p.name for p in _tf_files()}
    assert {"versions.tf", "variables.tf", "main.tf", "outputs.tf"} <= names
    for name in names:
        assert isinstance(_tf(name), dict)
    (terraform,) = _tf("versions.tf")["terraform"]
    (providers,) = terraform["required_providers"]
    assert providers["huaweicloud"]["source"] == "huaweicloud/huaweicloud"


def test_every_terraform_variable_is_documented_and_typed() -> None:
    for name, variable in _tf_variables().items():
        assert variable.get("description"), f"var.{name} has no description"
        assert variable.get("type"), f"var.{name} has no type"
    assert _tf_variables()["retry_api_token"].get("sensitive") is True


def test_function_handler_is_main_handler() -> None:
    function = _tf_resource("huaweicloud_fgs_function", "reaper")
    assert function["handler"] == "main.handler"
    module, _, name = function["handler"].partition(".")
    assert module == Path(MAIN_PY).stem
    assert name in _main_functions(), f"main.py has no top-level {name}()"
    runtime = _tf_eval(function["runtime"])
    match = re.fullmatch(r"Python3\.(\d+)", runtime)
    assert match and int(match.group(1)) >= 11, f"{runtime} cannot run code for Python >= 3.11"
    assert _tf_eval(function["timeout"]) > _tf_eval("${var.sweep_deadline}")


def test_terraform_user_data_names_are_settings() -> None:
    function = _tf_resource("huaweicloud_fgs_function", "reaper")
    assert function["user_data"] == "${jsonencode(local.user_data)}"
    assert "local.encrypted_user_data" in function["encrypted_user_data"]
    tf_locals = _tf_locals()
    assert "local.user_data_all" in tf_locals["user_data"]
    assert "local.encrypted_user_data_all" in tf_locals["encrypted_user_data"]
    plain = set(tf_locals["user_data_all"])
    encrypted = set(tf_locals["encrypted_user_data_all"])
    unknown = (plain | encrypted) - ENV_VARS
    assert not unknown, f"not read by failjob_reaper.settings: {sorted(unknown)}"
    assert not plain & _secret_settings(), "secrets belong in encrypted_user_data"
    assert encrypted <= _secret_settings()
    assert "RETRY_API_TOKEN" in encrypted
    assert {"SDRS_ENDPOINT", "RETENTION_POLICY_FILE"} <= plain


def _tf_default_environ() -> dict[str, str]:
    """The function's environment as Terraform deploys it with every default."""
    environ = {k: str(_tf_eval(v)) for k, v in _tf_locals()["user_data_all"].items()}
    environ["SDRS_ENDPOINT"] = "https://sdrs.ap-southeast-3.myhuaweicloud.com"  # computed local
    # Computed from resources created with the defaults (the channel, the topic).
    region = _tf_eval("${var.region}")
    environ["EG_ENDPOINT"] = _tf_eval(_tf_locals()["eg_endpoint"])
    environ["EG_CHANNEL_ID"] = "b7a1f0c2-3d4e-4f50-8a6b-7c8d9e0f1a2b"
    environ["SMN_ENDPOINT"] = f"https://smn.{region}.myhuaweicloud.com"
    environ["SMN_TOPIC_URN"] = (f"urn:smn:{region}:0605767f0a00d5762fe0c0148c8ba0d3:"
                                f"{_tf_eval('${var.smn_topic_name}')}")
    environ = {k: v for k, v in environ.items() if v != ""}
    environ.setdefault("SDRS_PROJECT_ID", "0605767f0a00d5762fe0c0148c8ba0d3")
    return environ


def test_terraform_user_data_defaults_are_a_valid_configuration() -> None:
    # FunctionGraph signs with the agency's temporary credentials from the context.
    load_settings(_tf_default_environ(), context_credentials=True)


def test_timer_trigger_starts_a_sweep_with_a_json_user_event() -> None:
    timer = _tf_resource("huaweicloud_fgs_function_trigger", "sweep")
    assert timer["type"] == "TIMER"
    event_data = json.loads(_tf_eval(timer["event_data"]))
    assert event_data["schedule_type"] in ("Rate", "Cron")
    assert event_data["schedule"] and event_data["name"]
    user_event = json.loads(event_data["user_event"])
    assert user_event == {"dry_run": False}


def test_eventgrid_subscription_filters_the_input_types() -> None:
    subscription = _tf_resource("huaweicloud_eg_event_subscription", "reaper")
    (source,) = subscription["sources"]
    rule = json.loads(_tf_eval(source["filter_rule"]))
    (type_filter,) = rule["type"]
    assert type_filter["op"] == "StringIn"
    assert sorted(type_filter["values"]) == sorted(
        [_settings_default("type_job_failed"), _settings_default("type_expired")]
    )
    (target,) = subscription["targets"]
    assert target["name"] == "HC.FunctionGraph"
    assert "huaweicloud_fgs_function.reaper.urn" in target["detail"]
    env_names = set(_tf_locals()["user_data_all"])
    assert {"EVENT_TYPE_JOB_FAILED", "EVENT_TYPE_EXPIRED"} <= env_names


def test_agency_delegates_to_functiongraph() -> None:
    agency = _tf_resource("huaweicloud_identity_agency", "function")
    assert agency["delegated_service_name"] == "op_svc_cff"
    (role,) = agency["project_role"]
    assert _tf_eval(role["roles"]), "the agency needs at least one role"


def test_provider_versions_have_every_resource_and_attribute_used() -> None:
    (terraform,) = _tf("versions.tf")["terraform"]
    (providers,) = terraform["required_providers"]
    # huaweicloud_fgs_function_trigger: 1.62.1; the APIG content_type and
    # is_send_fg_body_base64: 1.72.0 (the provider's CHANGELOG and git tags).
    assert providers["huaweicloud"]["version"] == ">= 1.72.0"
    assert providers["archive"]["version"] == ">= 2.5.0"  # 2.4.x ignores glob excludes
    assert "local" not in providers  # no file is written at apply any more


def test_the_zip_is_built_while_planning_so_inline_upload_works_on_a_clean_checkout() -> None:
    (archive,) = [body for t, _, body in _tf_blocks("data") if t == "archive_file"]
    # depends_on on a managed resource would defer the read to apply, and filebase64()
    # of a file that does not exist yet fails the plan.
    assert "depends_on" not in archive
    assert not [n for t, n, _ in _tf_blocks("resource") if t == "local_file"]
    function = _tf_resource("huaweicloud_fgs_function", "reaper")
    assert "filebase64(data.archive_file.code.output_path)" in function["func_code"]
    (lifecycle,) = archive["lifecycle"]
    assert "policy.yaml" in lifecycle["precondition"][0]["condition"]
    assert 'cp "${policy}" "${out}/policy.yaml"' in (TERRAFORM / "package.sh").read_text()


def test_cts_trigger_hands_sdrs_operations_to_the_function() -> None:
    from failjob_reaper.cts import SERVICES

    trigger = _tf_resource("huaweicloud_fgs_function_trigger", "cts")
    assert trigger["type"] == "CTS"
    assert trigger["function_urn"] == "${huaweicloud_fgs_function.reaper.urn}"
    event_data = json.loads(_tf_eval(trigger["event_data"]))
    assert event_data["name"]
    operations = event_data["operations"]
    assert 1 <= len(operations) <= 10
    for operation in operations:
        service, resource_type, names = operation.split(":")
        assert service in SERVICES and resource_type
        assert 1 <= len(names.split(";")) <= 10


def _dynamic_blocks(body: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """The blocks ``dynamic "<name>"`` expands to (for_each over a list local), with
    ``<name>.value`` replaced by each element."""
    (dynamic,) = [block[name] for block in body.get("dynamic", []) if name in block]
    each = re.fullmatch(r"\$\{toset\(local\.(\w+)\)\}", dynamic["for_each"])
    assert each, f"dynamic {name}: for_each over toset(local.<list>) expected"
    values = _tf_locals()[each.group(1)]
    (content,) = dynamic["content"]
    expanded = []
    for value in values:
        block = {}
        for key, raw in content.items():
            text = raw.replace("${" + name + ".value}", value)
            block[key] = text.replace(f"{name}.value", json.dumps(value))
        expanded.append(block)
    return expanded


def test_eventgrid_cloudtrace_subscription_matches_what_the_function_accepts() -> None:
    from failjob_reaper.cts import CLOUD_SOURCES, SERVICES, cloudevent_service, is_cloudtrace_event

    subscription = _tf_resource("huaweicloud_eg_event_subscription", "cloudtrace")
    # A sources block names one source: one block for every name SDRS publishes under.
    assert "sources" not in subscription, "one static sources block names one source only"
    sources = _dynamic_blocks(subscription, "sources")
    assert sorted(s["name"] for s in sources) == sorted(CLOUD_SOURCES)
    ids = set()
    for source in sources:
        assert source["provider_type"] == "OFFICIAL"
        rule = json.loads(_tf_eval(source["filter_rule"]))
        assert rule["source"] == [{"op": "StringIn", "values": [source["name"]]}]
        types = rule["type"][0]["values"]
        assert types and all(is_cloudtrace_event({"type": t}) for t in types)
        # Traces published under BRS carry BRS:CloudTrace:* types.
        assert {cloudevent_service({"type": t}) for t in types} == SERVICES
        # The block's own UUID (provider docs), never another resource's id.
        assert source["id"].startswith('${uuidv5("url", ') and ".id" not in source["id"]
        ids.add(source["id"])
    assert len(ids) == len(sources), "each sources block needs its own id"
    (target,) = subscription["targets"]
    assert target["name"] == "HC.FunctionGraph"
    assert "huaweicloud_fgs_function.reaper.urn" in target["detail"]
    assert target["id"] not in ids


def test_eventgrid_subscription_source_ids_are_their_own() -> None:
    for _, _, body in [b for b in _tf_blocks("resource")
                       if b[0] == "huaweicloud_eg_event_subscription"]:
        blocks = body.get("sources") or _dynamic_blocks(body, "sources")
        for block in [*blocks, *body["targets"]]:
            # The provider's docs: a UUID of the block's own, "no association with the
            # parameters or attributes of other resources".
            assert block["id"].startswith('${uuidv5("url", '), block["id"]
            assert not re.search(r"\.id\b", block["id"]), block["id"]


def test_outcomes_channel_and_its_source_match_the_function_settings() -> None:
    channel = _tf_resource("huaweicloud_eg_custom_event_channel", "outcomes")
    assert channel["name"]
    source = _tf_resource("huaweicloud_eg_custom_event_source", "outcomes")
    # Events name a source registered on the channel: the outcomes' CloudEvents source.
    assert _tf_eval(source["name"]) == _settings_default("outcome_source")
    user_data = _tf_locals()["user_data_all"]
    assert {"EG_ENDPOINT", "EG_CHANNEL_ID", "SMN_ENDPOINT", "SMN_TOPIC_URN"} <= set(user_data)
    assert "huaweicloud_eg_custom_event_channel.outcomes" in _tf_locals()[
        "eg_outcomes_channel_id"]
    assert "huaweicloud_smn_topic.alerts" in _tf_locals()["smn_topic_urn"]


def test_smn_topic_and_subscriptions_come_from_variables() -> None:
    topic = _tf_resource("huaweicloud_smn_topic", "alerts")
    assert _tf_eval(topic["name"]) == _tf_eval("${var.smn_topic_name}")
    subscription = _tf_resource("huaweicloud_smn_subscription", "alerts")
    assert "var.alert_subscriptions" in subscription["for_each"]
    assert _tf_variables()["alert_subscriptions"]["default"] == []


def test_the_agency_may_publish_outcomes_and_alerts() -> None:
    role = _tf_resource("huaweicloud_identity_role", "outputs")
    assert role["type"] == "XA"
    actions = _tf_locals()["output_actions"]
    assert "eg:channels:putEvents" in actions and "smn:topic:publish" in actions
    agency = _tf_resource("huaweicloud_identity_agency", "function")
    (project_role,) = agency["project_role"]
    assert "local.custom_role_names" in project_role["roles"]
    assert "var.agency_roles" in project_role["roles"]  # the SDRS task-center rights


def test_terraform_validate() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed")
    plugins = [Path.home() / ".terraform.d" / "plugins", TERRAFORM / ".terraform" / "providers"]
    if not any(p.is_dir() and any(p.rglob("terraform-provider-huaweicloud*")) for p in plugins):
        pytest.skip("terraform validate needs the huaweicloud and archive providers, which "
                    "only `terraform init` can download; none is installed and tests use no "
                    "network (terraform fmt -check and the HCL parse tests run instead)")
    result = subprocess.run([terraform, "validate", "-no-color"], cwd=TERRAFORM,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_terraform_fmt() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-diff", "-recursive", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------
# Container image
# ---------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_slim_python_311_pinned_by_digest() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: build tools stay out of the final image"
    for stage in stages:
        _, from_args = stage[0]
        image = from_args.split()[0]
        if image.startswith("${"):
            (arg,) = [a for i, a in _dockerfile_instructions() if i == "ARG" and "IMAGE=" in a]
            image = arg.partition("=")[2]
        # Full version tag and the digest: every build starts from the same bytes.
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", image), image


def test_dockerfile_copies_only_the_function() -> None:
    stages = _dockerfile_stages()
    allowed = {"requirements.lock", "main.py", "failjob_reaper/", "handlers/"}
    copied = set()
    for stage in stages[:-1]:
        for instruction, arguments in stage:
            if instruction in ("COPY", "ADD") and "--from=" not in arguments:
                assert instruction == "COPY"
                copied.update(arguments.split()[:-1])
    assert copied <= allowed, f"unexpected build inputs {sorted(copied - allowed)}"
    assert {"main.py", "failjob_reaper/", "handlers/"} <= copied
    final = stages[-1]
    for instruction, arguments in final:
        if instruction in ("COPY", "ADD"):
            assert "--from=" in arguments, "the final stage copies only from the build stage"
        if instruction == "RUN":
            assert not re.search(r"\b(apt-get|apk|pip)\s+(install|add)\b", arguments)
    ignore_file = DOCKERFILE.parent / "Dockerfile.dockerignore"
    patterns = [
        ln.strip()
        for ln in ignore_file.read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    assert patterns[0] == "*", "the .dockerignore is an allow-list"
    assert {f"!{name}" for name in allowed} <= set(patterns)
    assert not [p for p in patterns if p.startswith("!") and p[1:] not in allowed]


def test_dockerfile_runs_functions_framework_as_non_root() -> None:
    final = _dockerfile_stages()[-1]
    env: dict[str, str] = {}
    for instruction, arguments in final:
        if instruction == "ENV":
            env.update(_env_assignments(arguments))
    target = env["FUNCTION_TARGET"]
    assert target in _main_functions(), f"main.py has no top-level {target}()"
    assert env["FUNCTION_SIGNATURE_TYPE"] == SIGNATURES[target]
    assert Path(env["FUNCTION_SOURCE"]).name == MAIN_PY.name
    assert env["PORT"] == "8080"

    (user,) = [a for i, a in final if i == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root UID"

    entry = [a for i, a in final if i == "ENTRYPOINT"]
    cmd = [a for i, a in final if i == "CMD"]
    command = [*(_exec_form(entry[-1]) if entry else []), *(_exec_form(cmd[-1]) if cmd else [])]
    assert command, "no ENTRYPOINT/CMD"
    assert Path(command[0]).name == "functions-framework"
    # Any explicit --target must name a real entry point too.
    for flag, value in itertools.pairwise(command):
        if flag == "--target":
            assert value in _main_functions()
