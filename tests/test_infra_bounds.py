"""Terraform refuses at plan what the platform or the code would refuse later.

Each rule has one home: the code's bounds are its settings (failjob_reaper/settings.py)
and pyproject.toml's requires-python; the platform's rules are written below, with
the page they come from. Terraform 1.3 validations can read nothing but their own
variable, so the validations in infra/functiongraph repeat the rules as literals,
and these tests evaluate every validation (and every precondition on the variable)
on values at and around each bound: a value Terraform passes must be one the
function and the platform take, and the other way round. A validation written in a
form the evaluator below does not know fails here, and where `terraform` is
installed the evaluator is checked against `terraform console`.

The same file checks the dependency lock (requirements.lock, `make lock`): the image,
the FunctionGraph package and the test venv install it, so a deployment runs the
versions the tests ran.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import math
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from annotated_types import Ge, Gt, Le, Lt
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from failjob_reaper.errors import ConfigError
from failjob_reaper.settings import Settings, load_settings
from tests.test_infra import (
    DOCKERFILE,
    ROOT,
    TERRAFORM,
    _dockerfile_instructions,
    _dockerfile_stages,
    _tf_blocks,
    _tf_default_environ,
    _tf_locals,
    _tf_resource,
    _tf_variables,
)

PACKAGE_SH = TERRAFORM / "package.sh"
LOCK = ROOT / "requirements.lock"
REQUIREMENTS = ROOT / "requirements.txt"

# The platform's rules.
# FunctionGraph's Python runtimes (FunctionGraph user guide, "Runtimes"; the provider's
# huaweicloud_fgs_function docs list up to Python3.10 and refer to the API for newer ones).
FUNCTIONGRAPH_PYTHON_RUNTIMES = ("Python2.7", "Python3.6", "Python3.9", "Python3.10", "Python3.12")
# huaweicloud_eg_custom_event_source `name`, provider docs at 1.72.0 and 1.97.1: 1-128
# lowercase letters, digits, '-' and '_', starting with a lowercase letter or digit.
EG_CUSTOM_SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}")


# ---------------------------------------------------------------------------
# A small evaluator of Terraform conditions
# ---------------------------------------------------------------------------


class _Unsupported(AssertionError):
    """The condition uses HCL this evaluator does not know: extend it, or write it simpler."""


class _HclError(Exception):
    """A Terraform function failed (what can() turns into false)."""


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _hcl_regex(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise _HclError(f"regex {pattern!r}: no match")
    return match.group(0)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "contains": lambda items, value: value in items,
    "regex": _hcl_regex,
    "floor": math.floor,
    "length": len,
}


def _python_source(condition: str) -> str:
    """HCL operators as Python's, outside string literals (whose escapes both share)."""
    body = condition.strip()
    assert body.startswith("${") and body.endswith("}"), condition
    body = body[2:-1]

    def operators(code: str) -> str:
        code = code.replace("&&", " and ").replace("||", " or ")
        code = re.sub(r"!(?!=)", " not ", code)
        for hcl, python in (("true", "True"), ("false", "False"), ("null", "None")):
            code = re.sub(rf"\b{hcl}\b", python, code)
        return code

    parts, position = [], 0
    for literal in _STRING.finditer(body):
        parts += [operators(body[position:literal.start()]), literal.group(0)]
        position = literal.end()
    parts.append(operators(body[position:]))
    return "".join(parts).strip()


def _evaluate(node: ast.expr, variables: Mapping[str, Any]) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.List(elts=elements):
            return [_evaluate(e, variables) for e in elements]
        case ast.Attribute(value=ast.Name(id="var"), attr=name):
            return variables[name]
        case ast.BoolOp(op=ast.And(), values=values):
            return all([_evaluate(v, variables) for v in values])  # HCL does not short-circuit
        case ast.BoolOp(op=ast.Or(), values=values):
            return any([_evaluate(v, variables) for v in values])
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            return not _evaluate(operand, variables)
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_evaluate(operand, variables)
        case ast.Compare(left=left, ops=[op], comparators=[right]):
            a, b = _evaluate(left, variables), _evaluate(right, variables)
            compare: dict[type, Callable[[Any, Any], bool]] = {
                ast.Eq: lambda x, y: bool(x == y), ast.NotEq: lambda x, y: bool(x != y),
                ast.Lt: lambda x, y: bool(x < y), ast.LtE: lambda x, y: bool(x <= y),
                ast.Gt: lambda x, y: bool(x > y), ast.GtE: lambda x, y: bool(x >= y),
            }
            if type(op) not in compare:
                raise _Unsupported(ast.dump(op))
            return compare[type(op)](a, b)
        case ast.Call(func=ast.Name(id="can"), args=[argument], keywords=[]):
            try:
                _evaluate(argument, variables)
            except _HclError:
                return False
            return True
        case ast.Call(func=ast.Name(id=name), args=arguments, keywords=[]) if name in _FUNCTIONS:
            return _FUNCTIONS[name](*[_evaluate(a, variables) for a in arguments])
    raise _Unsupported(f"cannot evaluate {ast.unparse(node)}")


def _tf_condition(condition: str, variables: Mapping[str, Any]) -> bool:
    tree = ast.parse(_python_source(condition), mode="eval")
    return bool(_evaluate(tree.body, variables))


def _hcl_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    assert isinstance(value, str) and "${" not in value and "%{" not in value, value
    return json.dumps(value)


# ---------------------------------------------------------------------------
# What Terraform checks about one variable, and what the code takes
# ---------------------------------------------------------------------------


def _references(condition: str) -> set[str]:
    return set(re.findall(r"\bvar\.([A-Za-z_][A-Za-z0-9_]*)", condition))


def _checks(variable: str) -> list[str]:
    """The variable's validations, and every precondition in the module that reads it and
    nothing but variables (a precondition on files or resources is not about its value)."""
    conditions = [v["condition"] for v in _tf_variables()[variable].get("validation", [])]
    for kind in ("resource", "data"):
        for _, _, body in _tf_blocks(kind):
            for lifecycle in body.get("lifecycle", []):
                for precondition in lifecycle.get("precondition", []):
                    condition = precondition["condition"]
                    if variable in _references(condition) and not re.search(
                        r"\b(local|data|path)\.|\bfile\(", condition
                    ):
                        conditions.append(condition)
    return conditions


def _defaults() -> dict[str, Any]:
    return {name: v["default"] for name, v in _tf_variables().items() if "default" in v}


def _terraform_accepts(variable: str, value: Any) -> bool:
    return all(_tf_condition(c, {**_defaults(), variable: value}) for c in _checks(variable))


def _env_name(variable: str) -> str:
    """The setting the variable becomes in the function's user_data."""
    names: list[str] = [k for k, v in _tf_locals()["user_data_all"].items()
                        if f"var.{variable}" in str(v)]
    assert len(names) == 1, f"var.{variable} feeds {names}"
    return names[0]


def _tostring(value: Any) -> str:
    """Terraform's tostring() of a number or a string."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _code_accepts(variable: str, value: Any) -> bool:
    environ = _tf_default_environ()
    text = _tostring(value)
    if text == "":
        environ.pop(_env_name(variable), None)  # Terraform leaves empty values out
    else:
        environ[_env_name(variable)] = text
    try:
        load_settings(environ, context_credentials=True)
    except ConfigError:
        return False
    return True


def _number_probes(variable: str) -> list[float]:
    """Every bound the setting or Terraform names, and the numbers just around it."""
    field = next(f for f in Settings.model_fields.values()
                 if f.validation_alias == _env_name(variable))
    limits: list[Any] = [getattr(m, attribute) for m in field.metadata
                         for kind, attribute in ((Ge, "ge"), (Gt, "gt"), (Le, "le"), (Lt, "lt"))
                         if isinstance(m, kind)]
    assert limits, f"{_env_name(variable)} has no bounds in the settings"
    bounds = {float(limit) for limit in limits}
    for condition in _checks(variable):
        bounds |= {float(n) for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", condition)}
    bounds |= {float(v) for v in _defaults().values() if isinstance(v, int | float)
               and not isinstance(v, bool)}
    probes = {0.0, -1.0, 0.5, 1.5, 5000.0}
    for bound in bounds:
        probes |= {bound - 1, bound - 0.5, bound, bound + 0.5, bound + 1}
    return sorted(probes)


_STRING_PROBES = (
    "failjob-reaper", "/failjob-reaper", "failjob_reaper", "Failjob-reaper", "fail.job",
    "-failjob", "_failjob", "0", "a", "a" * 128, "a" * 129, "sdrs-task-center",
    "urn:failjob", "https://example.com/failjob", "fail job", "",
)


def _requires_python() -> SpecifierSet:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return SpecifierSet(project["requires-python"])


def _runtime_runs_the_code(runtime: str) -> bool:
    if runtime not in FUNCTIONGRAPH_PYTHON_RUNTIMES:
        return False
    return Version(runtime.removeprefix("Python")) in _requires_python()


# variable -> (probes, what the platform and the code together take)
def _cases() -> dict[str, tuple[list[Any], Callable[[Any], bool]]]:
    timeout = _defaults()["timeout"]
    return {
        "runtime": (
            [*FUNCTIONGRAPH_PYTHON_RUNTIMES, "Python3.11", "Python3.13", "Python3.14",
             "python3.12", "Python3.12 ", "Python 3.12", "Custom Image", "http", ""],
            _runtime_runs_the_code,
        ),
        "alerts_per_hour": (
            _number_probes("alerts_per_hour"),
            lambda n: _code_accepts("alerts_per_hour", n),
        ),
        # The function's timeout bounds it too: a sweep must report before it is killed.
        "sweep_deadline": (
            _number_probes("sweep_deadline"),
            lambda n: _code_accepts("sweep_deadline", n) and n < timeout,
        ),
        # Also the outcome channel's custom event source name (enable_eventgrid_outcomes).
        "outcome_source": (
            [*_STRING_PROBES, _defaults()["outcome_source"]],
            lambda s: _code_accepts("outcome_source", s)
            and EG_CUSTOM_SOURCE_NAME.fullmatch(s) is not None,
        ),
        # A custom event source name only (publishers use it as the CloudEvents source).
        "eventgrid_source_name": (
            [*_STRING_PROBES, _defaults()["eventgrid_source_name"]],
            lambda s: EG_CUSTOM_SOURCE_NAME.fullmatch(s) is not None,
        ),
    }


CASES = ("runtime", "alerts_per_hour", "sweep_deadline", "outcome_source",
         "eventgrid_source_name")


# ---------------------------------------------------------------------------
# Terraform's checks against the code's and the platform's
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variable", CASES)
def test_terraform_accepts_exactly_what_the_platform_and_the_code_accept(variable: str) -> None:
    assert _checks(variable), f"var.{variable} is not checked at all"
    probes, expected = _cases()[variable]
    differ = [f"{value!r}: Terraform {'accepts' if ok else 'refuses'} it" for value in probes
              if (ok := _terraform_accepts(variable, value)) != expected(value)]
    assert not differ, f"var.{variable}: Terraform and the code/platform disagree: {differ}"
    default = _defaults()[variable]
    assert _terraform_accepts(variable, default) and expected(default)


def test_only_python312_runs_the_code_on_functiongraph() -> None:
    # The reason the runtime check is so narrow, stated from its sources.
    accepted = [r for r in FUNCTIONGRAPH_PYTHON_RUNTIMES if _terraform_accepts("runtime", r)]
    assert accepted == ["Python3.12"]
    assert _tf_resource("huaweicloud_fgs_function", "reaper")["runtime"] == "${var.runtime}"


def test_the_checks_catch_what_the_issue_saw_plan_and_fail_later() -> None:
    # Values that planned before and failed at apply or at every start.
    assert not _terraform_accepts("alerts_per_hour", 5000)
    assert not _terraform_accepts("outcome_source", "/failjob-reaper")
    assert not _terraform_accepts("runtime", "Python3.11")
    assert not _terraform_accepts("runtime", "Python3.13")


def _probe_pairs() -> Iterator[tuple[str, str, Any]]:
    for variable in CASES:
        probes, _ = _cases()[variable]
        for condition in _checks(variable):
            for value in probes:
                yield variable, condition, value


def _substituted(condition: str, values: Mapping[str, Any]) -> str:
    """The condition with every var.<name> outside string literals replaced by its value."""

    def literals(code: str) -> str:
        return re.sub(r"\bvar\.(\w+)", lambda m: _hcl_literal(values[m.group(1)]), code)

    body = condition.strip()[2:-1]
    pieces, position = [], 0
    for literal in _STRING.finditer(body):
        pieces += [literals(body[position:literal.start()]), literal.group(0)]
        position = literal.end()
    pieces.append(literals(body[position:]))
    return "".join(pieces)


def test_the_evaluator_agrees_with_terraform_console(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed (the evaluator's results stand alone)")
    pairs = list(_probe_pairs())
    defaults = _defaults()
    expressions = [_substituted(c, {**defaults, v: x}) for v, c, x in pairs]
    # `terraform console` reads its input as one expression when it is not a terminal.
    result = subprocess.run(
        [terraform, "console"], input=f"jsonencode([{', '.join(expressions)}])\n",
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"},
    )
    assert result.returncode == 0, result.stderr
    by_terraform = json.loads(json.loads(result.stdout))
    ours = [_tf_condition(c, {**defaults, v: x}) for v, c, x in pairs]
    differ = [(v, x) for (v, _, x), a, b in zip(pairs, ours, by_terraform, strict=True) if a != b]
    assert not differ, f"the evaluator is wrong for {differ}"


def test_the_evaluator_refuses_what_it_does_not_know() -> None:
    with pytest.raises(_Unsupported):
        _tf_condition('${startswith(var.x, "a")}', {"x": "abc"})
    assert _tf_condition('${var.x == "" || can(regex("^a$", var.x))}', {"x": "a"})
    assert not _tf_condition('${!contains(["a"], var.x)}', {"x": "a"})


# ---------------------------------------------------------------------------
# The package is built for the runtime Terraform deploys, from the lock
# ---------------------------------------------------------------------------


def _run_package_sh(tmp_path: Path, **env: str) -> tuple[list[str], Path]:
    """package.sh with a stand-in for `python -m pip` that records its arguments."""
    recorded = tmp_path / "pip-args"
    stub = tmp_path / "python"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{recorded}"\n', encoding="utf-8")
    stub.chmod(0o755)
    out = tmp_path / "package"
    environ = {k: v for k, v in os.environ.items() if k not in ("FGS_RUNTIME", "TF_VAR_runtime")}
    environ.update({"PYTHON": str(stub), "FGS_PACKAGE_DIR": str(out),
                    "FGS_TFVARS": str(tmp_path / "absent.tfvars"), **env})
    result = subprocess.run(["bash", str(PACKAGE_SH)], env=environ, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return recorded.read_text(encoding="utf-8").splitlines(), out


def _option(arguments: list[str], name: str) -> list[str]:
    return [arguments[i + 1] for i, a in enumerate(arguments[:-1]) if a == name]


def test_package_is_built_from_the_lock_for_the_runtime_terraform_deploys(
    tmp_path: Path,
) -> None:
    arguments, out = _run_package_sh(tmp_path)
    runtime = _defaults()["runtime"]
    assert arguments[:2] == ["-m", "pip"] and "install" in arguments
    assert _option(arguments, "--python-version") == [runtime.removeprefix("Python")]
    assert _option(arguments, "-r") == [str(LOCK)]
    assert "--require-hashes" in arguments and "--only-binary=:all:" in arguments
    assert _option(arguments, "--target") == [str(out)]
    assert (out / ".fgs-runtime").read_text(encoding="utf-8").strip() == runtime
    assert {"main.py", "policy.yaml", "failjob_reaper", "handlers"} <= {
        p.name for p in out.iterdir()}


def test_package_follows_the_runtime_terraform_is_given(tmp_path: Path) -> None:
    tfvars = tmp_path / "terraform.tfvars"
    tfvars.write_text('region  = "ap-southeast-3"\nruntime = "Python3.10"\n', encoding="utf-8")
    arguments, out = _run_package_sh(tmp_path, FGS_TFVARS=str(tfvars))
    assert _option(arguments, "--python-version") == ["3.10"]
    assert (out / ".fgs-runtime").read_text(encoding="utf-8").strip() == "Python3.10"
    arguments, _ = _run_package_sh(tmp_path, FGS_TFVARS=str(tfvars), TF_VAR_runtime="Python3.9")
    assert _option(arguments, "--python-version") == ["3.9"]
    arguments, _ = _run_package_sh(tmp_path, TF_VAR_runtime="Python3.9", FGS_RUNTIME="Python3.6")
    assert _option(arguments, "--python-version") == ["3.6"]


def test_terraform_refuses_a_package_built_for_another_runtime() -> None:
    (archive,) = [body for t, _, body in _tf_blocks("data") if t == "archive_file"]
    (lifecycle,) = archive["lifecycle"]
    conditions = [p["condition"] for p in lifecycle["precondition"]]
    assert any(".fgs-runtime" in c and "var.runtime" in c for c in conditions), conditions
    assert ".fgs-runtime" in archive["excludes"], "the marker is not part of the code"


# ---------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------

_LOCK_ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)"
    r"(?:\s*;\s*(?P<marker>[^\\]+?))?\s*(?:\\)?$"
)


def _lock() -> dict[str, tuple[str, Marker | None, int]]:
    """name -> (version, marker, number of hashes)."""
    entries: dict[str, tuple[str, Marker | None, int]] = {}
    current = None
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        match = _LOCK_ENTRY.match(line)
        if match:
            current = canonicalize_name(match["name"])
            assert current not in entries, f"{current} twice in the lock"
            marker = Marker(match["marker"]) if match["marker"] else None
            entries[current] = (match["version"], marker, 0)
        elif line.strip().startswith("--hash=sha256:"):
            assert current is not None
            version, marker, hashes = entries[current]
            entries[current] = (version, marker, hashes + 1)
        else:
            assert not line.strip() or line.lstrip().startswith("#"), f"lock line {line!r}"
    return entries


def _direct_requirements() -> list[Requirement]:
    requirements = []
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert not line.startswith("-"), f"requirements.txt: {line!r} (the lock reads it alone)"
            requirements.append(Requirement(line))
    return requirements


def test_lock_has_every_direct_requirement_at_its_pinned_version() -> None:
    lock = _lock()
    stale = []
    for requirement in _direct_requirements():
        name = canonicalize_name(requirement.name)
        locked = lock.get(name)
        if locked is None or not requirement.specifier.contains(locked[0], prereleases=True):
            stale.append(f"{requirement} (lock: {locked[0] if locked else 'absent'})")
    assert not stale, f"requirements.lock is stale, run `make lock`: {stale}"


def test_lock_pins_the_whole_tree_with_hashes() -> None:
    lock = _lock()
    assert len(lock) > len(_direct_requirements()), "transitive dependencies are locked too"
    assert all(hashes > 0 for _, _, hashes in lock.values()), "pip --require-hashes needs them"
    header = LOCK.read_text(encoding="utf-8").splitlines()[:2]
    assert header[1].strip() == "#    make lock", "regenerate it with `make lock`"


def test_the_tests_run_the_locked_versions() -> None:
    # make venv installs the lock first: what the image and the package install is
    # what these tests import.
    differ = []
    for name, (version, marker, _) in sorted(_lock().items()):
        if marker is not None and not marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "absent"
        if Version(installed if installed != "absent" else "0") != Version(version):
            differ.append(f"{name} {installed} (lock {version})")
    assert not differ, f"the venv is not the lock (make venv / make lock): {differ}"


def test_the_image_installs_the_lock_with_hashes() -> None:
    build = _dockerfile_stages()[0]
    copies = [a for i, a in build if i == "COPY"]
    assert any(a.split()[0] == "requirements.lock" for a in copies)
    installs = [a for i, a in build if i == "RUN" and "pip install" in a]
    assert installs
    for command in installs:
        assert "--require-hashes" in command and "-r /tmp/requirements.lock" in command
    assert "requirements.txt" not in DOCKERFILE.read_text(encoding="utf-8").split(
        "FROM", 1)[1], "the image installs the lock, not the direct requirements"


def test_the_image_python_meets_requires_python() -> None:
    (arg,) = [a for i, a in _dockerfile_instructions() if i == "ARG" and "IMAGE=" in a]
    tag = re.fullmatch(r"PYTHON_IMAGE=python:(\d+\.\d+\.\d+)-slim-bookworm@sha256:[0-9a-f]{64}",
                       arg)
    assert tag, arg
    assert Version(tag.group(1)) in _requires_python()
