"""The repository is whole on its own: no tracked file names a path outside it.

A clone has no specification next to it, no shared folder beside it and not the
machine's own folders: a comment, test or page that cites one sends its reader nowhere,
and a test that reads one skips silently. Rules are cited by the docs page that states
them (``docs/safety.md``, ``docs/state.md``, ...). Every tracked file is checked.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

OUTSIDE: dict[str, re.Pattern[str]] = {
    "a folder next to the repository": re.compile(r"\.\./shared\b|(?<![\w.-])shared/SPEC"),
    "a specification file outside the repository": re.compile(r"\bSPEC\.md\b", re.IGNORECASE),
    "a citation of an outside specification": re.compile(r"\bSPEC\b"),
    "an absolute path of the machine it was written on":
        re.compile(r"(?<![\w.:/-])/" + "work/"),
    "an absolute path to a specification": re.compile(
        r"(?<![\w.-])/(?:[\w.-]+/)+[\w.-]*spec[\w.-]*\.(?:md|txt|rst)\b", re.IGNORECASE
    ),
    "an outside reference note": re.compile(
        r"(?<![\w/.-])reference/(?:platforms|sdrs-task-center)\.md\b"
    ),
}
"""What names something outside: each kind with the words of the failure message."""



def _tracked() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False
    )
    assert listing.returncode == 0, (
        "the repository's files are listed with git ls-files; this test runs in a git "
        f"checkout: {listing.stderr.decode(errors='replace').strip()}"
    )
    names = [name for name in listing.stdout.decode().split("\0") if name]
    assert "README.md" in names and "tests/conftest.py" in names, "git listed another tree"
    return names


def _mentions(name: str) -> list[str]:
    """Each line of a tracked file that names something outside, with its kind."""
    path = ROOT / name
    if not path.is_file():
        return []  # deleted in the work tree, not yet in the index
    data = path.read_bytes()
    if b"\0" in data:
        return []  # binary (an image): no text to cite anything
    text = data.decode("utf-8", errors="replace")
    return [f"{name}:{number}: {kind}: {line.strip()[:120]}"
            for number, line in enumerate(text.splitlines(), 1)
            for kind, pattern in OUTSIDE.items() if pattern.search(line)]


def test_the_patterns_catch_every_kind_of_outside_path() -> None:
    # Each way a file was seen to cite the outside, and what must stay allowed.
    cited = [
        "the contract is [`{up}/SPEC.md`]({up}/SPEC.md)".format(up=".." + "/shared"),
        "SPEC_FILE = Path('{root}/shared/SPEC.md')".format(root="/" + "work"),
        "# Huawei Cloud outputs (SPEC section 11)",
        "as the sink emitter does (SPEC 7).",
        "(SPEC sections 8, 10)",
        "see /home/someone/product-spec.md",
        "Choices where the real API is not settled (see reference/sdrs-task-center.md):",
    ]
    allowed = [
        "from tests.test_policy_load import POLICY_EXAMPLE",
        "SPEC_EXAMPLE = '...'",
        "openapi-spec-validator==0.9.0",
        "the policy is at /etc/failjob-reaper/policy.yaml",
        "see docs/safety.md and docs/contract.md",
        "WORKDIR /app",
    ]
    for line in cited:
        assert any(p.search(line) for p in OUTSIDE.values()), f"not caught: {line}"
    for line in allowed:
        assert not any(p.search(line) for p in OUTSIDE.values()), f"caught: {line}"


def test_no_tracked_file_names_a_path_outside_the_repository() -> None:
    found = [mention for name in _tracked() if name != THIS
             for mention in _mentions(name)]
    assert not found, (
        "these lines name something outside the repository; cite the docs page that "
        "states the rule instead (docs/<page>.md):\n" + "\n".join(found)
    )


def test_the_docs_pages_cited_in_the_code_exist() -> None:
    # A citation of a docs page is only worth something if the page is there.
    cited = re.compile(r"\bdocs/([\w-]+\.md)\b")
    missing = sorted({f"{name}: docs/{page}"
                      for name in _tracked() if name != THIS
                      for page in cited.findall(
                          (ROOT / name).read_text(encoding="utf-8", errors="replace")
                          if (ROOT / name).is_file() else "")
                      if not (ROOT / "docs" / page).is_file()})
    assert not missing, "cited docs pages that do not exist:\n" + "\n".join(missing)
