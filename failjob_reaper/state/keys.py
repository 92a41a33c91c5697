"""Every key this deployment keeps in the state store, named in one place (README, "State").

Keys are relative to the store's namespace. Each is written here once: its name or
format, what it holds, and its TTL where the TTL is fixed (where it is not, the comment
says who chooses it). Every key has a TTL and none holds a secret. ``declared(key)``
names the entry a key belongs to: a test runs the function and checks that every key
it writes is one of these.
"""

from __future__ import annotations

import hashlib
import re

_HOUR = 3600.0
_DAY = 24 * _HOUR


def _digest(text: str) -> str:
    """A fixed-length token of any text (identities may be long, or hold any character)."""
    return hashlib.sha256(text.encode()).hexdigest()[:40]


# -- inputs and answers (state/idempotency.py) ------------------------------------------

IDEMPOTENCY = "idem:"
ANSWER_TTL = _DAY
"""An answer is replayed this long; while in progress, the record expires with the work."""


def idempotency(identity: str) -> str:
    """An input's record (by its identity): its request's fingerprint, then its answer."""
    return IDEMPOTENCY + _digest(identity)


# -- the DELETE journal (state/journal.py) ------------------------------------------------

JOURNAL = "journal:"
JOURNAL_ALIAS = "journal:alias:"
JOURNAL_TTL = _DAY


def journal(task_id: str) -> str:
    """A DELETE this deployment sent for the task: its decision, then whether reported."""
    return JOURNAL + task_id


def journal_alias(alias: str) -> str:
    """Another id of a journalled task (job_id, resource_id): the id its DELETE was for."""
    return JOURNAL_ALIAS + alias


# -- one sweep at a time (state/lease.py, coordination.py) ----------------------------

LEASE = "lease:sweep"
"""The sweep lease: its holder and fencing token (TTL: the sweep's deadline)."""
FENCE = "lease:sweep:fence"
"""The fencing counter: only ever grows, so it outlives any lease."""
FENCE_TTL = 30 * _DAY

BUDGET = "budget:"
BUDGET_TTL = _DAY


def budget(identity: str) -> str:
    """DELETEs sent by one sweep input, across every instance and redelivery."""
    return BUDGET + _digest(identity)


# -- outcomes not delivered yet (outcomes/_publisher.py) ---------------------------------

OUTBOX = "outbox"
"""A hash of pending outcome events: event id -> its event and the time it is due."""
OUTBOX_TTL = 7 * _DAY
"""Refreshed by every write: an outbox nobody touches for a week is given up."""
OUTBOX_CLAIM = "outbox:claim:"
CLAIM_TTL = 30.0
OUTBOX_DROPPED = "outbox:dropped"
"""How many outcome events destinations refused for good (logged, then dropped)."""
OUTBOX_DROPPED_TTL = 30 * _DAY
"""Kept 30 days from the last drop."""


def outbox_claim(event_id: str) -> str:
    """Which instance is sending this pending event right now."""
    return OUTBOX_CLAIM + event_id


# -- alerts (alerts.py) ---------------------------------------------------------------

SMN_FAILED = "smn:failed:"
SMN_FAILED_TTL = _DAY
SMN_SENT = "smn:sent:"
SMN_SENT_TTL = _HOUR + 60.0
SMN_SUPPRESSED = "smn:suppressed"
"""How many alerts this hour's budget held back: told in the next one that is sent."""
SMN_SUPPRESSED_TTL = 7 * _DAY
SMN_NOTICE = "smn:notice:"


def smn_failed(task_id: str | None) -> str:
    """That a permanent delete failure of this task was alerted today (once a day)."""
    return SMN_FAILED + (task_id or "-")


def smn_sent(hour: int) -> str:
    """Alerts sent in this hour (hours since the epoch), for the hourly budget."""
    return f"{SMN_SENT}{hour}"


def smn_notice(digest: str) -> str:
    """That these due tasks were announced (TTL: the notice window, at least an hour)."""
    return SMN_NOTICE + digest[:32]


# -- the lookup index (scopes.py, LookupIndex) -----------------------------------------

INDEX = "ix:"
INDEX_TTL = _HOUR
"""The length of one generation of the index: a listing's word on where a record lives is
used in its generation and the next (between one and two of these; an hourly sweep
renews it)."""
INDEX_SCOPES = "ix:scopes"
"""The scopes the index's entries name: a hash of scope code (a digest of the group id)
-> group id (TTL: two generations, refreshed by every listing written)."""
INDEX_SCOPES_TTL = 2 * INDEX_TTL
SCOPE_VIEW = "sv:"
GROUPS_VIEW = "gv"
"""The last complete list of protection groups, and when (TTL: the views' maximum age)."""


def index_bucket(generation: int, bucket: int) -> str:
    """One of the 32,768 buckets of one generation of the index: a hash from a digest of a
    record's ``<field>:<value>`` -> the codes of the scopes it was last listed in (TTL: to
    the end of the next generation)."""
    return f"{INDEX}{generation}:{bucket:04x}"


def scope_view(scope: str) -> str:
    """A scope's last complete listing: a Bloom filter of the index keys it held, and when
    (one string, replaced whole; TTL: the views' maximum age). ``scope``: a group id, or
    "-" for the top level."""
    return SCOPE_VIEW + scope


# -- the adaptive request rate (sdrs/_pacing.py) ------------------------------------------

RATE_STATE = "rate:state"
"""The rate after the latest throttle, shared so every instance slows down (TTL:
``LIMIT_TTL`` of sdrs/_ratelimit.py, how long a throttle's limit holds)."""
RATE_WINDOW = "rate:w:"
RATE_WINDOW_TTL = 5.0


def rate_window(second: int) -> str:
    """Requests every instance sent in this wall-clock second."""
    return f"{RATE_WINDOW}{second}"


# -- every key, for tests and tools -----------------------------------------------------

_ANY = r"[^\x00-\x1f]+"
_DECLARED: tuple[tuple[str, str], ...] = (
    # (name, the pattern of its keys), the longer prefix first where one holds another
    ("idempotency", re.escape(IDEMPOTENCY) + "[0-9a-f]{40}"),
    ("journal_alias", re.escape(JOURNAL_ALIAS) + _ANY),
    ("journal", re.escape(JOURNAL) + _ANY),
    ("fence", re.escape(FENCE)),
    ("lease", re.escape(LEASE)),
    ("budget", re.escape(BUDGET) + "[0-9a-f]{40}"),
    ("outbox_claim", re.escape(OUTBOX_CLAIM) + _ANY),
    ("outbox_dropped", re.escape(OUTBOX_DROPPED)),
    ("outbox", re.escape(OUTBOX)),
    ("smn_failed", re.escape(SMN_FAILED) + _ANY),
    ("smn_sent", re.escape(SMN_SENT) + "[0-9]+"),
    ("smn_suppressed", re.escape(SMN_SUPPRESSED)),
    ("smn_notice", re.escape(SMN_NOTICE) + "[0-9a-f]{32}"),
    ("index_scopes", re.escape(INDEX_SCOPES)),
    ("index", re.escape(INDEX) + "[0-9]+:[0-9a-f]{4}"),
    ("scope_view", re.escape(SCOPE_VIEW) + _ANY),
    ("groups_view", re.escape(GROUPS_VIEW)),
    ("rate_state", re.escape(RATE_STATE)),
    ("rate_window", re.escape(RATE_WINDOW) + "[0-9]+"),
)

NAMES: tuple[str, ...] = tuple(name for name, _ in _DECLARED)
"""The name of every entry, as ``declared`` gives it."""

FIXED_TTLS: dict[str, float] = {
    "journal": JOURNAL_TTL, "journal_alias": JOURNAL_TTL, "fence": FENCE_TTL,
    "budget": BUDGET_TTL, "outbox": OUTBOX_TTL, "outbox_claim": CLAIM_TTL,
    "outbox_dropped": OUTBOX_DROPPED_TTL,
    "smn_failed": SMN_FAILED_TTL, "smn_sent": SMN_SENT_TTL,
    "smn_suppressed": SMN_SUPPRESSED_TTL, "index_scopes": INDEX_SCOPES_TTL,
    "rate_window": RATE_WINDOW_TTL,
}
"""The TTL each of these keys is always written with."""


def declared(key: str) -> str | None:
    """The name of the entry above that ``key`` is one of; None when it is none."""
    for name, pattern in _DECLARED:
        if re.fullmatch(pattern, key):
            return name
    return None
