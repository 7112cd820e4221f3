"""clients/README.md: its examples run against a real authsvc, its reference covers `__all__`.

Every ```python block is executed and every ```pycon block run as a doctest, in the order of
the file and in one namespace, as a reader would try them.
"""

from __future__ import annotations

import doctest
import re
import subprocess
from pathlib import Path
from typing import Any

import authsvc_client
import pytest

from tests.harness import AUTHSVC_BIN, HarnessFactory, env_without_authsvc_settings

README = Path(__file__).resolve().parents[2] / "clients" / "README.md"
_BLOCK = re.compile(r"^```(python|pycon)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def snippets(text: str) -> list[tuple[str, int, str]]:
    """The runnable blocks: (language, line of the first code line, code)."""
    return [
        (match[1], text.count("\n", 0, match.start(2)) + 1, match[2])
        for match in _BLOCK.finditer(text)
    ]


def reference(text: str) -> str:
    """The "## Reference" section."""
    return text.split("\n## Reference\n", 1)[1].split("\n## ", 1)[0]


def test_every_exported_name_is_in_the_reference() -> None:
    spans = re.findall(r"`([A-Za-z_]\w*)", reference(README.read_text()))
    missing = sorted(set(authsvc_client.__all__) - set(spans))
    assert missing == []


def test_the_examples_run_against_a_real_authsvc(
    authsvc_server_factory: HarnessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = authsvc_server_factory(audiences=("inventory",))
    secret = auth.create_client("inventory-reader", ("inventory.read",))
    auth.create_user("alice", "alice's password", ("read",))
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir(mode=0o700)
    # `authsvc login alice > pair.json`, as the file store example says.
    env = env_without_authsvc_settings(
        AUTHSVC_REDIS_URL=auth.settings.redis_url,
        AUTHSVC_DATA_DIR=str(auth.settings.data_dir),
        AUTHSVC_LISTEN=auth.target,
    )
    login = subprocess.run(
        [AUTHSVC_BIN, "login", "alice", "--password-stdin"],
        input="alice's password\n", capture_output=True, text=True, env=env, timeout=60,
        check=True,
    )  # fmt: skip
    (work / "pair.json").write_text(login.stdout)
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))  # where "~/.config/mytool" goes

    namespace: dict[str, Any] = {
        "AUTHSVC": auth.target,
        "CLIENT_ID": "inventory-reader",
        "CLIENT_SECRET": secret,
    }
    text = README.read_text()
    blocks = snippets(text)
    for language, line, code in blocks:
        where = f"{README}:{line}"
        if language == "python":
            exec(compile(code, where, "exec"), namespace)  # noqa: S102 - the README's own code
        else:
            run_doctest(code, namespace, where, line)
    assert sorted({language for language, _, _ in blocks}) == ["pycon", "python"]
    assert (home / ".config" / "mytool" / "session.json").is_file()
    # alice's `authsvc login`, then the service account once in each runtime: the file
    # store's second manager shares alice's session instead of logging in.
    assert auth.rpc_counts["Login"] == 3


def run_doctest(code: str, namespace: dict[str, Any], where: str, line: int) -> None:
    test = doctest.DocTestParser().get_doctest(code, namespace, where, str(README), line - 1)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=report.append, clear_globs=False)
    assert runner.failures == 0, "".join(report)
