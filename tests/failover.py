"""The failover scenario shared by the Cluster and Sentinel tests: revoke, kill the master
at once, wait for the promotion, and check that the revocation is still in force, while
Validate and Refresh load runs on two instances and every answer is checked.

Allowed answers under load: OK with the right `valid`, UNAVAILABLE, and for Refresh
UNAUTHENTICATED when the refresh token it holds was issued by a rotation the dead master
had not yet replicated (the documented loss; the loop then logs in again). Anything else
(INTERNAL, UNKNOWN, a revoked token said valid) fails the test.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time
from collections.abc import Callable

import grpc
from authsvc_api.v1 import auth_pb2

from authsvc.redis_process import RedisProcess, wait_until
from tests.harness import Harness

PASSWORD = "correct horse battery staple"
ROUNDS = int(os.environ.get("FAILOVER_ROUNDS", "10"))
"""Rounds of revoke -> kill -> promote -> Validate; `make soak` sets 50."""
RECOVERY_TIMEOUT = 60.0


@dataclasses.dataclass
class Outcomes:
    """Status codes seen by the load, and anything that must never happen."""

    codes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    wrong: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def saw(self, what: str, wrong: str = "") -> None:
        with self.lock:
            self.codes[what] += 1
            if wrong:
                self.wrong.append(wrong)


def _code(exc: grpc.RpcError) -> grpc.StatusCode:
    return exc.code()


class Load:
    """Validate (a live and a revoked token) and Refresh chains on each instance."""

    def __init__(self, instances: list[Harness], user: str, revoked: str) -> None:
        self.instances = instances
        self.user = user
        self.revoked = revoked
        self.out = Outcomes()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        # Sessions opened before the first revocation, which every later WAIT covers: only
        # a Refresh (or a new Login) acknowledged right before a kill can be lost.
        for h in self.instances:
            for target in (self._validate, self._refresh):
                pair = retry_unavailable(lambda h=h: h.login(self.user, PASSWORD))  # type: ignore[misc]
                assert isinstance(pair, auth_pb2.LoginResponse)
                self._threads.append(threading.Thread(target=target, args=(h, pair), daemon=True))
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _login(self, h: Harness) -> auth_pb2.LoginResponse | None:
        try:
            return h.login(self.user, PASSWORD)
        except grpc.RpcError as exc:
            self.out.saw(f"Login {_code(exc).name}", _unexpected("Login", exc))
            return None

    def _validate(self, h: Harness, live: auth_pb2.LoginResponse) -> None:
        while not self._stop.is_set():
            for token, want in ((live.access_token, True), (self.revoked, False)):
                try:
                    answer = h.stub.Validate(
                        auth_pb2.ValidateRequest(access_token=token), timeout=10
                    )
                except grpc.RpcError as exc:
                    self.out.saw(f"Validate {_code(exc).name}", _unexpected("Validate", exc))
                    time.sleep(0.01)
                    continue
                wrong = "" if answer.valid == want else f"Validate said valid={answer.valid}"
                self.out.saw("Validate OK", wrong)

    def _refresh(self, h: Harness, first: auth_pb2.LoginResponse) -> None:
        pair: auth_pb2.LoginResponse | auth_pb2.RefreshResponse | None = first
        while not self._stop.is_set():
            pair = pair or self._login(h)
            if pair is None:
                time.sleep(0.05)
                continue
            try:
                pair = h.stub.Refresh(
                    auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=10
                )
                self.out.saw("Refresh OK")
            except grpc.RpcError as exc:
                code = _code(exc)
                self.out.saw(f"Refresh {code.name}", _unexpected("Refresh", exc))
                if code is grpc.StatusCode.UNAUTHENTICATED:  # a rotation lost: log in again
                    pair = None
                time.sleep(0.01)


def _unexpected(rpc: str, exc: grpc.RpcError) -> str:
    allowed = {grpc.StatusCode.UNAVAILABLE}
    if rpc == "Refresh":
        allowed.add(grpc.StatusCode.UNAUTHENTICATED)
    code = _code(exc)
    return "" if code in allowed else f"{rpc} answered {code.name}: {exc.details()}"


def validate_settles(h: Harness, token: str) -> bool:
    """Validate `token` until it answers (not UNAVAILABLE); returns `valid`."""
    answer: list[bool] = []

    def answered() -> bool:
        try:
            reply = h.stub.Validate(auth_pb2.ValidateRequest(access_token=token), timeout=10)
        except grpc.RpcError as exc:
            assert _code(exc) is grpc.StatusCode.UNAVAILABLE, exc
            return False
        answer.append(reply.valid)
        return True

    wait_until(answered, "Validate answers again", RECOVERY_TIMEOUT)
    return answer[0]


def retry_unavailable(call: Callable[[], object]) -> object:
    """Run `call` until it does not fail with UNAVAILABLE (bounded)."""
    result: list[object] = []

    def done() -> bool:
        try:
            result.append(call())
        except grpc.RpcError as exc:
            if _code(exc) is not grpc.StatusCode.UNAVAILABLE:
                raise
            return False
        return True

    wait_until(done, "call succeeds", RECOVERY_TIMEOUT)
    return result[0]


def revoke_kill_promote(
    instances: list[Harness],
    user: str,
    load_user: str,
    kill: Callable[[], RedisProcess],
    wait_promoted: Callable[[RedisProcess], None],
    restart: Callable[[RedisProcess], None],
    rounds: int = ROUNDS,
) -> Outcomes:
    """The scenario; returns what the load saw (callers assert on it)."""
    a, b = instances
    scopes = [
        auth_pb2.REVOKE_SCOPE_TOKEN,
        auth_pb2.REVOKE_SCOPE_SESSION,
        auth_pb2.REVOKE_SCOPE_USER,
    ]
    first = retry_unavailable(lambda: a.login(user, PASSWORD))
    assert isinstance(first, auth_pb2.LoginResponse)
    a.revoke(first.access_token)
    with Load(instances, load_user, first.access_token) as load:
        for round_ in range(rounds):
            login = retry_unavailable(lambda: a.login(user, PASSWORD))
            assert isinstance(login, auth_pb2.LoginResponse)
            for h in instances:  # both views now hold it
                assert validate_settles(h, login.access_token), f"round {round_}"
            scope = scopes[round_ % 3]  # an access token alone ends only itself
            a.revoke(login.access_token if round_ % 3 == 0 else login.refresh_token, scope)
            victim = kill()  # at once: only the replicas have the revocation now
            wait_promoted(victim)
            for h in instances:
                assert not validate_settles(h, login.access_token), f"round {round_}: revived"
            restart(victim)
    return load.out
