"""Masking secrets in text a server sent back, in the encodings a server echoes them in.

A server that repeats a credential in an error message may repeat it as sent, upper- or
lower-cased, base64-encoded (alone, or inside a longer base64 text such as a Basic
authorization value) or URL-encoded. ``mask_secrets`` replaces each of those forms with
``***``; the log formatter and the SDRS error mapping both use it (one rule, one place).
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET = 4
"""Shorter "secrets" are not masked: they would mask ordinary words."""


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every known encoding of every secret replaced by ``***``."""
    return masker(tuple(secrets))(text)


@functools.lru_cache(maxsize=32)
def masker(secrets: tuple[str, ...]) -> Callable[[str], str]:
    """The masking of ``mask_secrets`` for a fixed set of secrets, built once."""
    exact, folded = _forms(secrets)
    # Longest first: a secret that contains another is masked whole.
    alternatives = sorted(
        [(len(form), re.escape(form)) for form in exact]
        + [(len(form), f"(?i:{re.escape(form)})") for form in folded],
        key=lambda item: item[0], reverse=True)
    if not alternatives:
        return _unchanged
    pattern = re.compile("|".join(pattern for _, pattern in alternatives))
    return functools.partial(pattern.sub, MASK)


def _unchanged(text: str) -> str:
    return text


def _forms(secrets: Iterable[str]) -> tuple[set[str], set[str]]:
    """(forms matched exactly, forms matched whatever their case)."""
    exact: set[str] = set()
    folded: set[str] = set()
    for secret in secrets:
        if len(secret) < MIN_SECRET:
            continue
        # Text forms: any case (a server that upper-cases an echo still shows the secret).
        as_json = json.dumps(secret)[1:-1]
        folded.update({secret, as_json, as_json.replace("/", "\\/"),  # JSON may escape /
                       quote(secret, safe=""), quote_plus(secret, safe="")})
        exact.update(_base64_forms(secret.encode()))
    return ({f for f in exact if len(f) >= MIN_SECRET},
            {f for f in folded if len(f) >= MIN_SECRET})


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 characters that ``raw`` fixes wherever it sits in a longer encoded text:
    for each of the three alignments, the characters no neighbouring byte changes."""
    forms: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode()
        start = -(-8 * offset // 6)  # the first character made of the secret's bits only
        end = 8 * (offset + len(raw)) // 6
        core = encoded[start:end]
        forms.update({core, core.translate(_URLSAFE)})
    whole = base64.b64encode(raw).decode()
    forms.update({whole, whole.translate(_URLSAFE)})
    return forms


_URLSAFE = str.maketrans("+/", "-_")
