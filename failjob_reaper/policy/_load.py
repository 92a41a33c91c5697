"""Reading a policy file and turning validation failures into one-line errors.

Every problem becomes one line, ``<source>: <field path>: <what is wrong>``,
with the field path dotted and indexed (``rules[1].retention``). The input is
never echoed wholesale: at most a short excerpt of the offending value.
PyYAML is imported only when a YAML file is actually read (cold starts).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ._model import Policy

_MAX_FILE_BYTES = 1 << 20  # a policy is a few hundred bytes; refuse to slurp a wrong file
_MAX_PROBLEMS = 20
_SHOWN_MAX = 40


class PolicyError(ValueError):
    """An invalid policy: ``str(error)`` has one line per problem."""

    def __init__(self, *lines: str) -> None:
        super().__init__(*lines)
        self.problems: tuple[str, ...] = lines

    def __str__(self) -> str:
        return "\n".join(self.problems)


def default_policy() -> Policy:
    """7 days, keep-latest off, at most 500 deletions a sweep, no fraction
    guard, no rules, no holds (docs/policy.md).

    The model's own defaults, which need no validation: constructed without building
    the validator (cold start), equal to ``Policy()``."""
    return Policy.model_construct()


def parse_policy(data: object, *, source: str = "<policy>") -> Policy:
    """Validate already-decoded data (a mapping) into a ``Policy``."""
    if not isinstance(data, Mapping):
        raise PolicyError(
            f"{source}: expected a mapping of policy fields at the top level, got {_kind(data)}"
        )
    try:
        return Policy.model_validate(dict(data), context={"from_file": True})
    except ValidationError as exc:
        lines = [f"{source}: {_problem(err)}" for err in exc.errors(include_url=False)]
        if len(lines) > _MAX_PROBLEMS:
            more = len(lines) - _MAX_PROBLEMS
            lines = [*lines[:_MAX_PROBLEMS], f"{source}: ... and {more} more problems"]
        raise PolicyError(*lines) from None


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Load a policy from YAML (``.yaml``/``.yml``) or JSON (``.json``);
    any other name is tried as JSON, then as YAML."""
    name = os.fspath(path)
    source = f"policy file {name}"
    try:
        with open(name, "rb") as fh:
            raw = fh.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"{source}: cannot read: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise PolicyError(f"{source}: larger than {_MAX_FILE_BYTES} bytes; not a policy file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{source}: not UTF-8 text (byte {exc.start})") from None

    suffix = os.path.splitext(name)[1].lower()
    if suffix in (".yaml", ".yml"):
        data = _read_yaml(text, source)
    elif suffix == ".json":
        data = _read_json(text, source)
    else:
        try:
            data = _read_json(text, source)
        except PolicyError:
            data = _read_yaml(text, source)
    if data is None:
        # Empty (or only comments): every field is optional, so this is the default policy.
        return default_policy()
    return parse_policy(data, source=source)


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of duplicate keys; in a policy that hides a mistake.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _read_json(text: str, source: str) -> object:
    import json

    if not text.strip():
        return None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise PolicyError(
            f"{source}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except _DuplicateKeyError as exc:
        raise PolicyError(f"{source}: invalid JSON: duplicate key {_shown(exc.key)}") from None
    except RecursionError:
        raise PolicyError(f"{source}: invalid JSON: nested too deeply") from None
    except ValueError:  # Python refuses integers of more than 4300 digits
        raise PolicyError(f"{source}: invalid JSON: {_TOO_LONG}") from None


def _read_yaml(text: str, source: str) -> object:
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys (PyYAML keeps the last one)."""

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.MarkedYAMLError(
                        problem=f"duplicate key {_shown(key_node.value)}",
                        problem_mark=key_node.start_mark,
                    )
                seen.add(key)
        return loader.construct_mapping(node)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        where = ""
        if exc.problem_mark is not None:
            where = f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
        problem = exc.problem or exc.context or "syntax error"
        raise PolicyError(f"{source}: invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PolicyError(f"{source}: invalid YAML: {first}") from None
    except RecursionError:
        raise PolicyError(f"{source}: invalid YAML: nested too deeply") from None
    except ValueError:
        raise PolicyError(f"{source}: invalid YAML: {_TOO_LONG}") from None


_TOO_LONG = "a number with more digits than any setting could use"


# -- turning pydantic errors into one-liners ---------------------------------

_EXPECTED = {
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
}


def _problem(err: Any) -> str:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    if kind == "invalid_key":
        return _with_path(loc[:-1], f"field name {_shown(loc[-1])} is not a string")
    if kind == "extra_forbidden":
        return _with_path(loc, "unknown field")
    if kind == "missing":
        return _with_path(loc, "required field is missing")
    if kind == "value_error" and "error" in ctx:
        return _with_path(loc, str(ctx["error"]))
    if kind in _EXPECTED:
        return _with_path(loc, f"{_EXPECTED[kind]}, got {_kind(err.get('input'))}")
    if kind == "greater_than_equal":
        return _with_path(loc, f"must be at least {_num(ctx.get('ge'))}")
    if kind == "greater_than":
        return _with_path(loc, f"must be greater than {_num(ctx.get('gt'))}")
    if kind == "less_than_equal":
        return _with_path(loc, f"must be at most {_num(ctx.get('le'))}")
    if kind == "string_too_short":
        return _with_path(loc, "must not be empty")
    if kind == "finite_number":
        return _with_path(loc, "must be a finite number")
    return _with_path(loc, str(err.get("msg", kind)))


def _num(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _with_path(loc: Sequence[str | int], message: str) -> str:
    path = _path(loc)
    return f"{path}: {message}" if path else message


def _path(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:  # an unknown key that is not a plain name: quote it, briefly
            out += f"[{_shown(part)}]"
    return out


def _shown(value: object) -> str:
    try:
        text = str(value)
    except ValueError:  # an integer too long to print
        text = type(value).__name__
    return repr(text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX] + "...")


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__
