"""SECURITY.md's threat model names real tests: every `tests/<file>.py::<test>` it cites
exists (rows marked ⏳, for branches not merged yet, are skipped until the marker goes)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"\b(tests/[\w/]+\.py)::(\w+)")
PENDING = "\u23f3"


def cited_tests(text: str) -> list[tuple[str, str]]:
    """(file, test) pairs cited on lines without the pending marker."""
    return [
        (m.group(1), m.group(2))
        for line in text.splitlines()
        if PENDING not in line
        for m in REFERENCE.finditer(line)
    ]


def defined_tests(path: Path) -> set[str]:
    """Names of the test functions defined in a test module (top level or in a class)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_test_named_in_security_md_exists() -> None:
    cited = cited_tests((ROOT / "SECURITY.md").read_text(encoding="utf-8"))
    assert len(cited) >= 40  # the table is there and the pattern still matches it
    missing = [
        f"{file}::{name}"
        for file, name in cited
        if not (ROOT / file).is_file() or name not in defined_tests(ROOT / file)
    ]
    assert missing == []


def test_the_check_catches_a_missing_test_and_skips_pending_rows() -> None:
    text = (
        "| a | b | `tests/test_security_doc.py::test_no_such_test` |\n"
        f"| {PENDING} c | `tests/test_nowhere.py::test_pending` | {PENDING} |\n"
    )
    assert cited_tests(text) == [("tests/test_security_doc.py", "test_no_such_test")]
    assert "test_no_such_test" not in defined_tests(Path(__file__))
