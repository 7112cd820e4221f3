"""The sealed grace-window answer and the typed rotation contract between store and service."""

from __future__ import annotations

import base64
import re

from authsvc import grace, store_scripts
from authsvc.grace import GraceAnswer
from authsvc.store import RotateOutcome

OLD = "rt1.YWxpY2U.sid.secret-one"
ANSWER = GraceAnswer(
    access_token="a.b.c",
    refresh_token="rt1.YWxpY2U.sid.secret-two",
    access_expires_at=1_700_000_900,
    refresh_expires_at=1_701_209_600,
    scopes=("read", "write"),
)


def test_a_sealed_answer_opens_with_the_old_token_to_the_same_pair() -> None:
    assert grace.unseal(OLD, grace.seal(OLD, ANSWER)) == ANSWER


def test_a_sealed_answer_does_not_open_with_any_other_token() -> None:
    assert grace.unseal(OLD + "x", grace.seal(OLD, ANSWER)) is None


def test_a_sealed_answer_hides_the_tokens_it_holds() -> None:
    blob = grace.seal(OLD, ANSWER)
    raw = base64.b64decode(blob)
    assert ANSWER.refresh_token.encode() not in raw
    assert ANSWER.access_token.encode() not in raw


def test_a_tampered_or_garbage_blob_is_refused_not_raised() -> None:
    blob = bytearray(base64.b64decode(grace.seal(OLD, ANSWER)))
    blob[-1] ^= 1
    assert grace.unseal(OLD, base64.b64encode(bytes(blob)).decode()) is None
    for garbage in ("", "not base64 !", "AAAA", base64.b64encode(b"x" * 40).decode()):
        assert grace.unseal(OLD, garbage) is None


def test_an_answer_of_the_wrong_shape_is_refused() -> None:
    assert GraceAnswer.from_json(b'{"a": "x"}') is None
    assert GraceAnswer.from_json(b'{"a":1,"r":"r","ae":1,"re":1,"s":[]}') is None
    assert GraceAnswer.from_json(b"[]") is None


def test_every_outcome_the_rotation_script_returns_is_a_rotate_outcome() -> None:
    returned = set(re.findall(r"return \{'(\w+)'", store_scripts.ROTATE))
    assert returned == {outcome.value for outcome in RotateOutcome}


def test_only_reuse_and_ended_mean_the_script_ended_the_session() -> None:
    ending = {o for o in RotateOutcome if o.ended_session}
    assert ending == {RotateOutcome.REUSE, RotateOutcome.ENDED}
