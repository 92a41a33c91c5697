"""Retention policy: the functional core of failjob-reaper.

``decide(record, policy, now)`` is pure: no I/O, no clock, no global state that
could change an answer (it keeps memos only: a policy's prepared form per policy
object, its words per age). The decision order is documented in ``_decide``.
Loading imports PyYAML only when a YAML file is read, so importing this package
stays cheap on cold starts.
"""

from ._decide import Decision, decide, parse_begin_time
from ._describe import describe_policy, policy_warnings
from ._durations import format_duration, parse_duration
from ._load import PolicyError, default_policy, load_policy, parse_policy
from ._model import Guards, Holds, Match, Policy, Retention, Rule

__all__ = [
    "Decision",
    "Guards",
    "Holds",
    "Match",
    "Policy",
    "PolicyError",
    "Retention",
    "Rule",
    "decide",
    "default_policy",
    "describe_policy",
    "format_duration",
    "load_policy",
    "parse_begin_time",
    "parse_duration",
    "parse_policy",
    "policy_warnings",
]
