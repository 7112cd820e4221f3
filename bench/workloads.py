"""What the Python load generator sends, and how it knows each answer is right.

A `WorkloadSpec` is a picklable description handed to every generator process; there
`make_workload` turns it into an object whose `call(slot)` makes one RPC and checks the
answer. A slot is one of the process's concurrent in-flight loops; per-slot state (a
session's refresh token, a revoked flag) lives in the workload.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Protocol

import grpc
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

CALL_TIMEOUT = 30.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_HEALTH_REQUEST = health_pb2.HealthCheckRequest()


@dataclasses.dataclass(frozen=True)
class Account:
    """Login credentials: a user's name and password, or a client id and secret."""

    name: str
    secret: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class WorkloadSpec:
    """A picklable workload description.

    Attributes:
        kind: "health", "validate", "refresh", "login", "revoke", "mixed" or "flood" (Logins
            with a wrong password at made-up names).
        token: The access token of "validate".
        expect_valid: What "validate" must answer; expect_reason: the reason when invalid.
        accounts: Accounts to log in with; slots are spread over them round robin.
        mix: (operation, weight) pairs of "mixed".
        expect_codes: The gRPC status names that are right answers (OK unless said).
    """

    kind: str
    token: str = ""
    expect_valid: bool = True
    expect_reason: int = 0
    accounts: tuple[Account, ...] = ()
    mix: tuple[tuple[str, int], ...] = ()
    expect_codes: tuple[str, ...] = ("OK",)


class Workload(Protocol):
    """One generator process's view of a workload."""

    async def setup(self, slot: int) -> None:
        """Prepare a slot before the clock starts (e.g. log in to get a session)."""

    async def call(self, slot: int) -> tuple[str, bool]:
        """Make one RPC; returns (operation, answer is right). RPC errors propagate."""
        ...

    async def recover(self, slot: int) -> None:
        """Make a slot usable again after its call failed (e.g. a new session)."""


class _Stubs:
    def __init__(self, channel: grpc.aio.Channel, spec: WorkloadSpec, slot_base: int) -> None:
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.spec = spec
        self._slot_base = slot_base

    def account(self, slot: int) -> Account:
        accounts = self.spec.accounts
        return accounts[(self._slot_base + slot) % len(accounts)]

    async def login(self, slot: int) -> auth_pb2.LoginResponse:
        acct = self.account(slot)
        request = auth_pb2.LoginRequest(username=acct.name, password=acct.secret)
        reply: auth_pb2.LoginResponse = await self.auth.Login(request, timeout=CALL_TIMEOUT)
        return reply

    async def setup(self, slot: int) -> None:
        return None

    async def recover(self, slot: int) -> None:
        return None


def _issued_ok(reply: auth_pb2.LoginResponse | auth_pb2.RefreshResponse) -> bool:
    return bool(
        reply.access_token.count(".") == 2
        and reply.refresh_token
        and reply.token_type == "Bearer"
        and reply.expires_in > 0
        and reply.scopes
    )


class HealthLoad(_Stubs):
    """grpc.health.v1.Health/Check of the whole server: must answer SERVING."""

    async def call(self, slot: int) -> tuple[str, bool]:
        reply = await self.health.Check(_HEALTH_REQUEST, timeout=CALL_TIMEOUT)
        return "Check", reply.status == _SERVING


class ValidateLoad(_Stubs):
    """Validate of one token: must give the expected valid flag and reason."""

    def __init__(self, channel: grpc.aio.Channel, spec: WorkloadSpec, slot_base: int) -> None:
        super().__init__(channel, spec, slot_base)
        self._request = auth_pb2.ValidateRequest(access_token=spec.token)

    async def call(self, slot: int) -> tuple[str, bool]:
        reply = await self.auth.Validate(self._request, timeout=CALL_TIMEOUT)
        right = reply.valid == self.spec.expect_valid and reply.reason == self.spec.expect_reason
        return "Validate", right


class LoginLoad(_Stubs):
    """Login with the slot's account: must issue a token pair."""

    async def call(self, slot: int) -> tuple[str, bool]:
        return "Login", _issued_ok(await self.login(slot))


class RefreshLoad(_Stubs):
    """A chain of Refreshes per slot, each with the refresh token the last one returned."""

    def __init__(self, channel: grpc.aio.Channel, spec: WorkloadSpec, slot_base: int) -> None:
        super().__init__(channel, spec, slot_base)
        self._refresh: dict[int, str] = {}
        self._sid: dict[int, str] = {}

    async def setup(self, slot: int) -> None:
        reply = await self.login(slot)
        self._refresh[slot], self._sid[slot] = reply.refresh_token, reply.session_id

    recover = setup

    async def call(self, slot: int) -> tuple[str, bool]:
        old = self._refresh[slot]
        request = auth_pb2.RefreshRequest(refresh_token=old)
        reply = await self.auth.Refresh(request, timeout=CALL_TIMEOUT)
        self._refresh[slot] = reply.refresh_token
        right = _issued_ok(reply) and reply.refresh_token != old
        return "Refresh", right and reply.session_id == self._sid[slot]


class RevokeLoad(_Stubs):
    """Revoke (TOKEN) of the slot's access token, again and again: each one is a full
    revocation (the script writes, publishes and, with replicas, waits for their ack)."""

    def __init__(self, channel: grpc.aio.Channel, spec: WorkloadSpec, slot_base: int) -> None:
        super().__init__(channel, spec, slot_base)
        self._access: dict[int, str] = {}

    async def setup(self, slot: int) -> None:
        self._access[slot] = (await self.login(slot)).access_token

    recover = setup

    async def call(self, slot: int) -> tuple[str, bool]:
        request = auth_pb2.RevokeRequest(
            token=self._access[slot], scope=auth_pb2.REVOKE_SCOPE_TOKEN
        )
        await self.auth.Revoke(request, timeout=CALL_TIMEOUT)
        return "Revoke", True


@dataclasses.dataclass
class _Session:
    access: str
    refresh: str
    revoked: bool = False


class MixedLoad(_Stubs):
    """Per slot, one session used like a client would: mostly Validate, sometimes Refresh,
    Revoke (of the access token: the next Validate must say REVOKED) or a new Login."""

    def __init__(self, channel: grpc.aio.Channel, spec: WorkloadSpec, slot_base: int) -> None:
        super().__init__(channel, spec, slot_base)
        self._sessions: dict[int, _Session] = {}
        self._ops = [op for op, _ in spec.mix]
        self._weights = [weight for _, weight in spec.mix]
        self._rng = random.Random(slot_base)  # noqa: S311 - a workload mix, not a secret

    async def setup(self, slot: int) -> None:
        reply = await self.login(slot)
        self._sessions[slot] = _Session(reply.access_token, reply.refresh_token)

    recover = setup

    async def call(self, slot: int) -> tuple[str, bool]:
        op = self._rng.choices(self._ops, self._weights)[0]
        session = self._sessions[slot]
        if op == "Validate":
            reply = await self.auth.Validate(
                auth_pb2.ValidateRequest(access_token=session.access), timeout=CALL_TIMEOUT
            )
            if session.revoked:
                return op, not reply.valid and reply.reason == auth_pb2.INVALID_REASON_REVOKED
            return op, reply.valid
        if op == "Refresh":
            refreshed = await self.auth.Refresh(
                auth_pb2.RefreshRequest(refresh_token=session.refresh), timeout=CALL_TIMEOUT
            )
            self._sessions[slot] = _Session(refreshed.access_token, refreshed.refresh_token)
            return op, _issued_ok(refreshed)
        if op == "Revoke":
            request = auth_pb2.RevokeRequest(
                token=session.access, scope=auth_pb2.REVOKE_SCOPE_TOKEN
            )
            await self.auth.Revoke(request, timeout=CALL_TIMEOUT)
            session.revoked = True
            return op, True
        reply_login = await self.login(slot)
        self._sessions[slot] = _Session(reply_login.access_token, reply_login.refresh_token)
        return op, _issued_ok(reply_login)


class FloodLoad(_Stubs):
    """Bad logins: a wrong password at a made-up name each time (a password sprayer). The
    right answers are UNAUTHENTICATED (checked) and RESOURCE_EXHAUSTED (throttled or shed);
    an OK is a wrong answer."""

    def __init__(self, channel: grpc.aio.Channel, spec: WorkloadSpec, slot_base: int) -> None:
        super().__init__(channel, spec, slot_base)
        self._sent = 0

    async def call(self, slot: int) -> tuple[str, bool]:
        self._sent += 1
        name = f"sprayed-{self._slot_base + slot}-{self._sent}"
        request = auth_pb2.LoginRequest(username=name, password="not-the-password")
        await self.auth.Login(request, timeout=CALL_TIMEOUT)
        return "Login", False


_KINDS: dict[str, type[_Stubs]] = {
    "health": HealthLoad,
    "validate": ValidateLoad,
    "login": LoginLoad,
    "refresh": RefreshLoad,
    "revoke": RevokeLoad,
    "mixed": MixedLoad,
    "flood": FloodLoad,
}


def make_workload(channel: grpc.aio.Channel, spec: WorkloadSpec, slot_base: int) -> Workload:
    """The workload of `spec.kind` over `channel`; `slot_base` numbers this process's slots."""
    workload: Workload = _KINDS[spec.kind](channel, spec, slot_base)  # type: ignore[assignment]
    return workload
