"""The functions that make output safe for its reader: control characters escaped,
spreadsheet formulas neutralised, one instant format, secrets masked in every encoding
a server may echo them in."""

from __future__ import annotations

import base64
import csv
import io
import logging
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote, quote_plus

import httpx
import pytest

from failjob_reaper._secrets import MASK, mask_secrets
from failjob_reaper._text import csv_cell, escape_control, iso_utc
from failjob_reaper.cli import masked_url
from failjob_reaper.logs import _Masking
from failjob_reaper.plan import Everything, ScopeListing, make_plan
from failjob_reaper.plan_view import (
    Row,
    RowFilter,
    filter_rows,
    plan_rows,
    render_csv,
    render_table,
)
from failjob_reaper.policy import default_policy
from failjob_reaper.sdrs._errors import error_from_response
from tests.conftest import EXPIRED, FRESH, failed_task

# -- control characters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain name", "plain name"),
        ("two\nlines", "two\\nlines"),
        ("cr\rlf", "cr\\rlf"),
        ("tab\there", "tab\\there"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("nul\x00bel\x07del\x7f", "nul\\x00bel\\x07del\\x7f"),
        ("c1\x9bcsi\x85nel", "c1\\x9bcsi\\x85nel"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("bidi\u202eevil\u2066", "bidi\\u202eevil\\u2066"),
        ("ünïcode ok ✓", "ünïcode ok ✓"),
    ],
)
def test_control_characters_are_shown_escaped(raw: str, shown: str) -> None:
    assert escape_control(raw) == shown


def test_no_escaped_text_holds_a_control_character() -> None:
    every = "".join(map(chr, range(0x100))) + "\u2028\u2029\u202a\u202e\u2066\u2069"
    out = escape_control(every)
    assert "\n" not in out and "\x1b" not in out and "\r" not in out
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) < 0xA0 for c in out)


# -- CSV formulas -----------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_that_would_start_a_formula_gets_a_leading_quote(start: str) -> None:
    assert csv_cell(f'{start}HYPERLINK("http://evil","x")') == (
        f"'{start}HYPERLINK(\"http://evil\",\"x\")")


@pytest.mark.parametrize("value", ["Protected-Instance-1", "a=b", "", " =x", "'quoted"])
def test_other_cells_are_unchanged(value: str) -> None:
    assert csv_cell(value) == value


# -- one instant format -----------------------------------------------------------------------


def test_instants_are_utc_whole_seconds_with_z() -> None:
    moment = datetime(2026, 12, 5, 10, 20, 30, 446000, tzinfo=UTC)
    assert iso_utc(moment) == "2026-12-05T10:20:30Z"
    east = moment.astimezone(timezone(timedelta(hours=8)))
    assert iso_utc(east) == "2026-12-05T10:20:30Z"
    assert iso_utc(moment.replace(tzinfo=None)) == "2026-12-05T10:20:30Z"
    assert iso_utc(None) is None


# -- the renderers use them -------------------------------------------------------------------

NOW = datetime.now(UTC)


def _rows(*records: dict[str, object]) -> list:  # type: ignore[type-arg]
    plan = make_plan([ScopeListing(None, list(records))], default_policy(),
                     NOW + timedelta(seconds=1), id_field="resource_id", target=Everything(),
                     dry_run=True)
    return list(plan_rows(plan))


def test_the_table_escapes_a_field_that_would_print_a_line_of_its_own() -> None:
    fake = "x\ndecision:     delete\x1b[2J"
    row = Row(action="retained", failure_job_id="t1", job_id=None, resource_id=None,
              resource_name=fake, server_group_id=fake, rule=fake, retain_until=None,
              begin_time=None, reason=fake)
    table = render_table([row])
    assert len(table.splitlines()) == 2  # the header and the one row
    assert "\x1b" not in table
    assert table.count("x\\ndecision:     delete\\x1b[2J") == 3  # group, rule, reason


def test_csv_cells_never_start_a_formula_and_retain_until_has_one_format() -> None:
    evil = '=HYPERLINK("http://evil","x")'
    rows = _rows(failed_task(EXPIRED, resource_name=evil),
                 failed_task(FRESH, resource_name="@SUM(A1)", job_id="-2+3"))
    cells = list(csv.DictReader(io.StringIO(render_csv(rows))))
    assert {c["resource_name"] for c in cells} == {"'" + evil, "'@SUM(A1)"}
    assert "'-2+3" in {c["job_id"] for c in cells}
    (kept,) = [c for c in cells if c["action"] == "retained"]
    assert datetime.strptime(kept["retain_until"], "%Y-%m-%dT%H:%M:%SZ")


def test_row_filters_choose_rows_and_say_what_they_chose() -> None:
    old, new = failed_task(EXPIRED), failed_task(FRESH)
    rows = _rows(old, new)
    older = RowFilter(older_than=timedelta(days=1), now=NOW)
    assert [r.job_id for r in filter_rows(rows, older)] == [old["job_id"]]
    kept = RowFilter(actions=("retained",))
    assert [r.job_id for r in filter_rows(rows, kept)] == [new["job_id"]]
    assert filter_rows(rows, RowFilter(rules=("nosuchrule",))) == []
    assert filter_rows(rows, RowFilter()) == rows
    assert older.describe() == "begun more than 1d ago"


# -- secrets in their encodings ---------------------------------------------------------------

SECRET = "Tok3n/with+odd=chars&more"


def _encodings(secret: str) -> dict[str, str]:
    raw = secret.encode()
    return {
        "as sent": secret,
        "upper-cased": secret.upper(),
        "lower-cased": secret.lower(),
        "base64": base64.b64encode(raw).decode(),
        "base64 url-safe": base64.urlsafe_b64encode(raw).decode(),
        "base64 inside a Basic credential": base64.b64encode(b"user:" + raw).decode(),
        "base64 after one byte": base64.b64encode(b"x" + raw).decode(),
        "URL-encoded": quote(secret, safe=""),
        "URL-encoded, + for space": quote_plus(secret, safe=""),
        "URL-encoded, upper-cased": quote(secret, safe="").upper(),
        "JSON-escaped": '"' + secret.replace("/", "\\/") + '"',
    }


@pytest.mark.parametrize("encoding", list(_encodings(SECRET)))
def test_a_secret_is_masked_in_each_common_encoding(encoding: str) -> None:
    echoed = _encodings(SECRET)[encoding]
    text = f"denied: {echoed} is not valid"
    masked = mask_secrets(text, [SECRET])
    assert MASK in masked
    assert SECRET.lower() not in masked.lower()
    # What is left of the echo is what encodes its neighbours (a base64 prefix such as
    # "user:", the characters that mix a neighbour's bits): never a run of the secret.
    leftover = masked.replace("denied: ", "").replace(" is not valid", "").replace(MASK, "")
    assert len(leftover) <= _NOT_SECRET.get(encoding, 0) + 3, (encoding, masked)


_NOT_SECRET = {"base64 inside a Basic credential": 7, "base64 after one byte": 2}
"""Base64 characters that encode only the bytes before the secret ("user:", "x")."""


def test_short_secrets_and_other_text_are_left_alone() -> None:
    assert mask_secrets("abc is fine", ["abc"]) == "abc is fine"
    assert mask_secrets("nothing secret here", [SECRET]) == "nothing secret here"
    assert mask_secrets("anything", []) == "anything"


def test_a_secret_containing_another_is_masked_whole() -> None:
    assert mask_secrets("key=abcd1234efgh", ["abcd", "abcd1234efgh"]) == "key=***"


def test_the_log_masks_a_secret_a_server_echoed_base64_encoded_and_upper_cased() -> None:
    formatter = _Masking(logging.Formatter("%(message)s"), [SECRET])
    for echoed in (base64.b64encode(SECRET.encode()).decode(), SECRET.upper()):
        record = logging.LogRecord("failjob_reaper", logging.WARNING, __file__, 1,
                                   "the server said %s", (echoed,), None)
        assert formatter.format(record) == f"the server said {MASK}"


@pytest.mark.parametrize("encoding", ["upper-cased", "base64", "URL-encoded"])
def test_an_sdrs_error_masks_the_token_it_was_sent_in_each_encoding(encoding: str) -> None:
    token = "sdrs-Token-9a8b7c6d"
    request = httpx.Request("GET", "https://sdrs.example/v1/p/server-groups",
                            headers={"X-Auth-Token": token})
    echoed = _encodings(token)[encoding]
    response = httpx.Response(
        400, request=request,
        json={"error_code": "APIGW.0301", "error_msg": f"Incorrect IAM token {echoed}"})
    error = error_from_response(response, attempts=1)
    assert error.message == f"Incorrect IAM token {MASK}"


# -- a URL shown in a message ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw-secret@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
        ("rediss://user:pw-secret@h:6380/1?ssl_cert_reqs=required",
         "rediss://user:***@h:6380/1?ssl_cert_reqs=required"),
        ("redis://10.0.0.5:6379/0", "redis://10.0.0.5:6379/0"),
        ("memory://", "memory://"),
        ("redis://[::1", "<unreadable URL>"),
    ],
)
def test_a_state_url_is_shown_with_its_password_masked(url: str, shown: str) -> None:
    assert masked_url(url) == shown
