"""Loading policy files: formats, defaults, and one-line errors that name the
file and the field."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from failjob_reaper.policy import (
    Guards,
    Holds,
    Match,
    Policy,
    PolicyError,
    Rule,
    default_policy,
    load_policy,
    parse_policy,
)

# The full example policy (every field, docs/policy.md).
FULL_EXAMPLE = """\
default_retention: 7d          # ISO 8601 (P7D) or 30s/15m/12h/7d; "forever" never expires
keep_latest_per_resource: 0    # the newest N failed tasks of each resource_id are kept (0: off)
clock_skew_tolerance: 5m       # begin_time further in the future than this: retain
dry_run: false
notice: 0s                     # > 0: tell the operator (SMN) what will be deleted within this window
rules:                         # first match wins; all given fields must match; a list matches any of it
  - name: drills-are-noise
    match: {resource_type: [disaster_recovery_drills]}
    retention: 1d
  - name: keep-failovers
    match: {failure_status: [failoverFail, reverseFail]}
    retention: forever
  - name: evs-volume-errors
    match: {error_code: "EVS.*"}       # globs for error_code, resource_name, job_type
    retention: 0s
holds:                         # never deleted, not even by a forced manual call
  resource_ids: []
  resource_names: ["prod-*"]
  job_ids: []
guards:
  max_deletions_per_sweep: 500       # a sweep that would delete more deletes nothing
  max_deletion_fraction: 1.0         # ... or more than this share of what it listed (1.0: off)
"""  # noqa: E501 - as the docs print it

def _expected_full_policy() -> Policy:
    return Policy(
        default_retention=timedelta(days=7),
        rules=(
            Rule(
                name="drills-are-noise",
                match=Match(resource_type=("disaster_recovery_drills",)),
                retention=timedelta(days=1),
            ),
            Rule(
                name="keep-failovers",
                match=Match(failure_status=("failoverFail", "reverseFail")),
                retention=None,
            ),
            Rule(name="evs-volume-errors", match=Match(error_code="EVS.*"), retention="0s"),
        ),
        holds=Holds(resource_names=("prod-*",)),
        guards=Guards(max_deletions_per_sweep=500, max_deletion_fraction=1.0),
    )


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return str(caught.value)


# -- loading -------------------------------------------------------------


def test_full_example_loads(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "policy.yaml", FULL_EXAMPLE))
    assert policy == _expected_full_policy()
    assert policy.rules[1].retention is None
    assert policy.rules[2].retention == timedelta(0)
    assert policy.rules[2].match.error_code == ("EVS.*",)
    assert policy.clock_skew_tolerance == timedelta(minutes=5)


def test_json_file(tmp_path: Path) -> None:
    data = {
        "default_retention": "P14D",
        "keep_latest_per_resource": 2,
        "rules": [{"name": "r", "match": {"job_type": "create*"}, "retention": "12h"}],
        "holds": {"job_ids": ["j1"]},
    }
    policy = load_policy(_write(tmp_path, "p.json", json.dumps(data)))
    assert policy.default_retention == timedelta(days=14)
    assert policy.keep_latest_per_resource == 2
    assert policy.rules[0].match.job_type == ("create*",)
    assert policy.holds.job_ids == ("j1",)


def test_unknown_suffix_tries_json_then_yaml(tmp_path: Path) -> None:
    assert load_policy(_write(tmp_path, "a.conf", '{"dry_run": true}')).dry_run is True
    assert load_policy(_write(tmp_path, "b", "dry_run: true\n")).dry_run is True


def test_yml_suffix_and_pathlike(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "p.YML", "default_retention: forever\n"))
    assert policy.default_retention is None
    assert load_policy(str(tmp_path / "p.YML")) == policy


def test_blank_sections_mean_nothing_configured(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "p.yaml", "rules:\nholds:\nguards:\n"))
    assert policy == default_policy()


def test_default_policy() -> None:
    policy = default_policy()
    assert policy.default_retention == timedelta(days=7)
    assert policy.keep_latest_per_resource == 0
    assert policy.clock_skew_tolerance == timedelta(minutes=5)
    assert policy.dry_run is False
    assert policy.rules == ()
    assert policy.holds == Holds()
    assert policy.guards.max_deletions_per_sweep == 500
    assert policy.guards.max_deletion_fraction == 1.0


def test_policy_is_frozen() -> None:
    policy = default_policy()
    with pytest.raises(ValueError, match="frozen"):
        policy.dry_run = True


def test_match_normalises_strings_to_tuples() -> None:
    match = Match(resource_type="x", failure_status=["a", "b"])
    assert match.resource_type == ("x",)
    assert match.failure_status == ("a", "b")
    assert match.given() == {"resource_type": ("x",), "failure_status": ("a", "b")}


def test_json_dump_round_trips(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "p.yaml", FULL_EXAMPLE))
    dumped = policy.model_dump_json()
    assert '"forever"' in dumped and '"P7D"' in dumped
    assert load_policy(_write(tmp_path, "again.json", dumped)) == policy


def test_import_does_not_load_yaml() -> None:
    code = "import sys, failjob_reaper.policy; print('yaml' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# -- errors ---------------------------------------------------------------


def test_bad_duration_names_file_and_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "p.yaml",
        "rules:\n  - {name: a, retention: 1d}\n  - {name: b, retention: abc}\n",
    )
    assert _error(path) == (
        f"policy file {path}: rules[1].retention: invalid duration 'abc' "
        "(use P7D, 7d, 12h, 30m, 30s or forever)"
    )


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("colour: blue\n", "colour: unknown field"),
        ("rules:\n  - {name: a, retention: 1d, colour: x}\n", "rules[0].colour: unknown field"),
        (
            "rules:\n  - {name: a, retention: 1d, match: {color: x}}\n",
            "rules[0].match.color: unknown field",
        ),
        ("holds: {resource_id: [x]}\n", "holds.resource_id: unknown field"),
        ("guards: {max_deletions: 3}\n", "guards.max_deletions: unknown field"),
        ("keep_latest_per_resource: -1\n", "keep_latest_per_resource: must be at least 0"),
        ("keep_latest_per_resource: '3'\n", "keep_latest_per_resource: expected an integer"),
        ("guards: {max_deletion_fraction: 0}\n", "max_deletion_fraction: must be greater than 0"),
        ("guards: {max_deletion_fraction: 1.5}\n", "max_deletion_fraction: must be at most 1"),
        ("guards: {max_deletions_per_sweep: -5}\n", "max_deletions_per_sweep: must be at least 0"),
        (
            "rules:\n  - {name: a, retention: 1d}\n  - {name: a, retention: 2d}\n",
            "rules: duplicate rule name 'a' (rules[0] and rules[1])",
        ),
        ("rules:\n  - {name: '', retention: 1d}\n", "rules[0].name: must not be empty"),
        ("rules:\n  - {name: '  ', retention: 1d}\n", "rules[0].name: rule name must not be blank"),
        (
            "rules:\n  - {name: hold, retention: 1d}\n",
            "rules[0].name: rule name 'hold' is reserved",
        ),
        ("rules:\n  - {name: a}\n", "rules[0].retention: required field is missing"),
        ("rules:\n  - {name: a, retention: }\n", "rules[0].retention: missing duration"),
        (
            "rules:\n  - {name: a, retention: 1d, match: {job_id: []}}\n",
            "rules[0].match.job_id: an empty list matches nothing",
        ),
        (
            "rules:\n  - {name: a, retention: 1d, match: {error_code: [EVS.1, 7]}}\n",
            "rules[0].match.error_code[1]: expected a string, got an integer",
        ),
        ("rules: {name: a}\n", "rules: expected a list, got a mapping"),
        ("holds: [a]\n", "holds: expected a mapping, got a list"),
        ("default_retention: 7\n", "default_retention: invalid duration 7: a plain number"),
        ("default_retention: P1M\n", "default_retention: invalid duration 'P1M': years and months"),
        ("default_retention: -1d\n", "default_retention: invalid duration '-1d': negative"),
        ("clock_skew_tolerance: forever\n", "clock_skew_tolerance: invalid duration 'forever'"),
        ("dry_run: maybe\n", "dry_run: expected true or false, got a string"),
        ("1: x\n", "field name '1' is not a string"),
    ],
)
def test_field_errors(tmp_path: Path, text: str, line: str) -> None:
    path = _write(tmp_path, "p.yaml", text)
    message = _error(path)
    assert message.startswith(f"policy file {path}: ")
    assert line in message
    assert "\n" not in message  # one problem, one line


def test_every_problem_gets_its_own_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.yaml", "colour: x\nkeep_latest_per_resource: -1\ndry_run: 3\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 3 == len(caught.value.problems)
    assert all(line.startswith(f"policy file {path}: ") for line in lines)


def test_many_problems_are_capped(tmp_path: Path) -> None:
    text = "".join(f"unknown{i}: 1\n" for i in range(50))
    message = _error(_write(tmp_path, "p.yaml", text))
    assert len(message.splitlines()) == 21
    assert message.endswith("... and 30 more problems")


def test_input_is_not_dumped(tmp_path: Path) -> None:
    secret_ish = "x" * 500
    message = _error(_write(tmp_path, "p.yaml", f"default_retention: {secret_ish}\n"))
    assert secret_ish not in message
    assert len(message) < 300


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        (
            "p.yaml",
            "- a\n- b\n",
            "expected a mapping of policy fields at the top level, got a list",
        ),
        ("p.json", "[1, 2]", "expected a mapping of policy fields at the top level, got a list"),
        ("p.yaml", "just a string\n", "at the top level, got a string"),
    ],
)
def test_not_a_mapping(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    path = _write(tmp_path, name, text)
    message = _error(path)
    assert message.startswith(f"policy file {path}: ")
    assert fragment in message


@pytest.mark.parametrize(
    ("name", "text"),
    [("p.json", "null"), ("p.yaml", ""), ("p.yaml", "# nothing but a comment\n"),
     ("p.json", ""), ("p.json", " \n")],
)
def test_an_empty_file_is_the_default_policy(tmp_path: Path, name: str, text: str) -> None:
    # Every field is optional: a file that sets none of them is the default policy.
    assert load_policy(_write(tmp_path, name, text)) == Policy()


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.yaml", "dry_run: false\nrules:\n  - name: a\n   retention: 1d\n")
    message = _error(path)
    assert message.startswith(f"policy file {path}: invalid YAML at line 4, column 4: ")


def test_yaml_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.yaml", "dry_run: true\ndry_run: false\n")
    assert _error(path) == (
        f"policy file {path}: invalid YAML at line 2, column 1: duplicate key 'dry_run'"
    )


def test_json_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.json", '{\n  "dry_run": true,\n}\n')
    assert _error(path).startswith(f"policy file {path}: invalid JSON at line 3, column 1: ")


def test_json_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.json", '{"dry_run": true, "dry_run": false}')
    assert _error(path) == f"policy file {path}: invalid JSON: duplicate key 'dry_run'"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert _error(path) == f"policy file {path}: cannot read: No such file or directory"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    assert _error(tmp_path).startswith(f"policy file {tmp_path}: cannot read: ")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"dry_run: \xff\n")
    assert _error(path) == f"policy file {path}: not UTF-8 text (byte 9)"


def test_parse_policy_default_source_and_non_mapping() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"colour": 1})
    assert str(caught.value) == "<policy>: colour: unknown field"
    with pytest.raises(PolicyError, match=r"^cfg: expected a mapping .* got nothing \(null\)$"):
        parse_policy(None, source="cfg")


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)
