"""The Redis store: the only module that speaks Redis.

Key layout (every key of one user shares the hash tag `{u:<name>}`, so multi-key scripts
stay in one Redis Cluster slot):

    authsvc:users                      SET   all account names (admin listing only)
    authsvc:names                      HASH  spelling -> stored name, only for accounts
                                             stored under a name that is not canonical
                                             (created before names were; see names.py)
    authsvc:{u:NAME}:user              HASH  kind, pwhash, pwver, disabled, scopes, auds
                                             (allowed audiences), created
    authsvc:{u:NAME}:fails             HASH  n (failed logins in a row), until (throttle, ms)
    authsvc:{u:NAME}:trying            ZSET  login attempts in flight -> end of their lease (ms)
    authsvc:{u:NAME}:sessions          SET   session ids
    authsvc:signing-keys               HASH  kid -> key record (JSON: alg, sealed private key,
                                             published_ms, activates_ms, by); see keyring.py
    authsvc:{u:NAME}:s:SID             HASH  cur/prev refresh digests, gu/gb grace window and
                                             sealed answer, old (retired digests), exp, abs,
                                             scope, aud, cid, rj:<jti> revoked access tokens,
                                             created / refreshed (epoch s, admin listing)

    authsvc:{u:NAME}:ack               STRING a fence written right before WAIT (1 s TTL)

Login failure budgets beyond the name's live under their own hash tags (other slots):

    authsvc:{src:DIGEST}:fails         HASH  level (failures not yet forgotten), at (ms)
    authsvc:{src:DIGEST}:trying        ZSET  attempts in flight of one source (DIGEST: a
                                             SHA-256 prefix of the source's identity)
    authsvc:{logins}:fails, :trying          the same for every login (the global budget)

A session hash exists exactly as long as the session is alive (its TTL covers the last
access token issued in it), so Validate's revocation check is one HMGET.

Every write that takes power away (a revocation, reuse detection, disabling an account,
a new password, new scopes) runs on a connection pinned to its slot's master and, before
it returns, is acknowledged by `min_replicas_ack` replicas (`WAIT` on that connection;
`authsvc.redis_connection`), so a failover cannot bring a revoked token back.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import enum
import functools
import hashlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, cast

import redis.exceptions

from authsvc import store_scripts
from authsvc.errors import AccountExists, InvalidInput, NotFound, StoreUnavailable
from authsvc.names import canonical_name
from authsvc.redis_connection import (
    ALWAYS,
    UNAVAILABLE_ERRORS,
    ClientOptions,
    LuaScript,
    RedisConnection,
    ReplicationNotConfirmed,
    closed_under_us,
)
from authsvc.redis_target import Topology
from authsvc.revocation_channels import channel_for
from authsvc.telemetry import NULL_TELEMETRY, StoreErrorKind, Telemetry

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_PREFIX = "authsvc:"
USERS_INDEX = _PREFIX + "users"
NAMES_INDEX = _PREFIX + "names"
SIGNING_KEYS = _PREFIX + "signing-keys"
KEEP_RETIRED = 8


def session_ended_event(name: str, sid: str) -> str:
    """Revocation event: one session (and all its tokens) ended."""
    return f"s|{name}|{sid}"


def user_ended_event(name: str) -> str:
    """Revocation event: every session of a user ended."""
    return f"u|{name}"


def token_revoked_event(name: str, sid: str, jti: str) -> str:
    """Revocation event: one access token revoked."""
    return f"t|{name}|{sid}|{jti}"


def user_key(name: str) -> str:
    """The account hash of `name`."""
    return f"{_PREFIX}{{u:{name}}}:user"


def fails_key(name: str) -> str:
    """The failed-login counter of `name` (exists for unknown names too)."""
    return f"{_PREFIX}{{u:{name}}}:fails"


def trying_key(name: str) -> str:
    """The login attempts of `name` in flight (counted, not yet settled)."""
    return f"{_PREFIX}{{u:{name}}}:trying"


def sessions_key(name: str) -> str:
    """The set of session ids of `name`."""
    return f"{_PREFIX}{{u:{name}}}:sessions"


def session_key(name: str, sid: str) -> str:
    """The hash of one session."""
    return f"{_PREFIX}{{u:{name}}}:s:{sid}"


def fence_key(name: str) -> str:
    """The key written right before WAIT when a write of `name` must be acknowledged."""
    return f"{_PREFIX}{{u:{name}}}:ack"


class AccountKind(enum.Enum):
    """Who an account belongs to: a person, or a service (client credentials)."""

    USER = "user"
    CLIENT = "client"


class RevokeOutcome(enum.Enum):
    """What a Revoke with a refresh token did (see `store_scripts.REVOKE_BY_REFRESH`)."""

    REVOKED = "revoked"
    """The token was live (current, or just rotated inside the grace window): done."""
    STALE = "stale"
    """A token this session issued, but retired (or expired, to end all sessions): nothing
    changed."""
    UNKNOWN = "unknown"
    """No such session, or not one of its tokens: nothing changed."""


class RotateOutcome(enum.Enum):
    """What the rotation script did with a presented refresh token."""

    ROTATED = "rotated"
    """The presented token was current: the successor is now current."""
    GRACE = "grace"
    """A retry of the just-retired token inside the grace window: the sealed first answer."""
    REUSE = "reuse"
    """A retired token outside the grace window: the session was ended."""
    ENDED = "ended"
    """The session had expired, the account is disabled or may no longer use the
    session's audience: the session was ended."""
    INVALID = "invalid"
    """Not a token of this session (or no such session): nothing changed."""
    REGRANT = "regrant"
    """The grant or account limits passed in are not the stored ones: nothing changed;
    read them and retry."""

    @property
    def ended_session(self) -> bool:
        """True when the script ended the session."""
        return self in (RotateOutcome.REUSE, RotateOutcome.ENDED)


@dataclasses.dataclass(frozen=True)
class RotateResult:
    """The outcome of a rotation and, for GRACE, the sealed answer of the first call."""

    outcome: RotateOutcome
    sealed_answer: str = ""


@dataclasses.dataclass(frozen=True)
class Account:
    """An account as stored (the password hash never leaves the domain layer)."""

    name: str
    kind: AccountKind
    pwhash: str
    pwver: str
    disabled: bool
    scopes: tuple[str, ...]
    #: Epoch seconds of creation (0 where unknown, e.g. read during login).
    created: int = 0
    #: Audiences tokens may be issued for; empty means the service-wide list.
    audiences: tuple[str, ...] = ()

    @property
    def limits(self) -> AccountLimits:
        """What the account may be granted now."""
        return AccountLimits(self.scopes, self.audiences)


@dataclasses.dataclass(frozen=True)
class AccountLimits:
    """What an account may be granted now: its allowed scopes, and its allowed audiences
    (empty: the service-wide list)."""

    scopes: tuple[str, ...]
    audiences: tuple[str, ...]


class Admission(enum.Enum):
    """What a failure budget said to one login attempt."""

    OPEN = "ok"
    """The attempt was counted and holds a place until it is settled."""
    BUSY = "busy"
    """Every place is held by attempts in flight: wait for one to settle, then ask again."""
    THROTTLED = "throttled"
    """Confirmed failures used the budget up: retry after `retry_after_ms`."""


class AttemptOutcome(enum.Enum):
    """How a counted login attempt ended."""

    PASSED = "passed"
    """The password was right: the name's count resets, the place is given back."""
    FAILED = "failed"
    """The password was checked and wrong (or the result is unknown): one more failure."""
    ABANDONED = "abandoned"
    """The password was never checked: the place is given back, nothing is counted."""


@dataclasses.dataclass(frozen=True)
class NameThrottle:
    """The per-name throttle: after `max_failures` failures in a row, `base_ms` doubling
    with each further failure up to `max_ms`."""

    max_failures: int
    base_ms: int
    max_ms: int

    @property
    def ttl_ms(self) -> int:
        """How long a count of failures in a row is kept after the last attempt: an hour,
        or twice the longest throttle (bounded memory for guesses at made-up names)."""
        return max(3600 * 1000, 2 * self.max_ms)


@dataclasses.dataclass(frozen=True)
class FailureBudget:
    """A failure budget beyond the name's: `limit` failures, refilled over `window_ms`."""

    tag: str
    """The hash tag its keys share (one Redis Cluster slot per budget)."""
    limit: int
    window_ms: int

    @classmethod
    def of_source(cls, source: str, limit: int, window_ms: int) -> FailureBudget:
        """The budget of one caller identity (hashed: any bytes make a fixed-size key)."""
        digest = hashlib.sha256(source.encode("utf-8", "replace")).hexdigest()[:32]
        return cls(f"{{src:{digest}}}", limit, window_ms)

    @classmethod
    def of_everyone(cls, limit: int, window_ms: int) -> FailureBudget:
        """The global budget, shared by every login."""
        return cls("{logins}", limit, window_ms)

    @property
    def ttl_ms(self) -> int:
        """Longer than a full budget takes to drain: its keys only collect garbage."""
        return 2 * self.window_ms + 3600 * 1000

    def keys(self) -> list[str]:
        """Its failure level and its attempts in flight."""
        return [f"{_PREFIX}{self.tag}:fails", f"{_PREFIX}{self.tag}:trying"]


@dataclasses.dataclass(frozen=True)
class LoginGate:
    """Result of counting a login attempt against its name: when OPEN, the account (None
    if unknown); when THROTTLED, how long to wait."""

    admission: Admission
    retry_after_ms: int = 0
    account: Account | None = None


def _admission(res: Sequence[Any]) -> tuple[Admission, int]:
    admission = Admission(str(res[0]))
    return admission, int(res[1]) if admission is Admission.THROTTLED else 0


@dataclasses.dataclass(frozen=True)
class SessionRecord:
    """What Refresh needs to know about a session before rotating."""

    scopes: tuple[str, ...]
    audience: str
    client_id: str
    absolute_exp: int


@dataclasses.dataclass(frozen=True)
class SessionInfo:
    """A session as the admin API lists it: when and for what, never a token or digest."""

    session_id: str
    #: Epoch seconds of the login that opened it (0 for sessions older than this field).
    created: int
    #: Epoch seconds of the last refresh; 0 when never refreshed.
    refreshed: int
    client_id: str
    scopes: tuple[str, ...]
    audience: str
    refresh_expires_at: int
    absolute_expires_at: int


ItemT = TypeVar("ItemT")


@dataclasses.dataclass(frozen=True)
class Page(Generic[ItemT]):
    """One page of a listing in a stable order; `next_after` is "" on the last page."""

    items: tuple[ItemT, ...]
    next_after: str


class AddKeyIf(enum.Enum):
    """When `RedisStore.add_signing_key` adds the key."""

    ALWAYS = "always"
    RING_EMPTY = "empty"
    """Only into an empty ring (first start)."""
    ROTATION_DUE = "due"
    """Only if no key was published after the given time (automatic rotation)."""


@dataclasses.dataclass(frozen=True)
class StoredSigningKey:
    """A key record of the ring as stored: the private key only sealed (see sealing.py)."""

    kid: str
    alg: str
    sealed: str
    published_ms: int
    activates_ms: int
    by: str

    def to_json(self) -> str:
        """The stored form (the kid is the hash field)."""
        doc = dataclasses.asdict(self)
        del doc["kid"]
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, kid: str, raw: str) -> StoredSigningKey | None:
        """Parse a stored record; None for anything malformed."""
        try:
            doc = json.loads(raw)
            key = cls(
                kid=kid,
                alg=doc["alg"],
                sealed=doc["sealed"],
                published_ms=doc["published_ms"],
                activates_ms=doc["activates_ms"],
                by=doc.get("by", ""),
            )
        except (ValueError, TypeError, KeyError, RecursionError):
            return None
        texts = (key.alg, key.sealed, key.by)
        times = (key.published_ms, key.activates_ms)
        ok = all(isinstance(t, str) for t in texts) and all(type(t) is int for t in times)
        return key if ok else None


@dataclasses.dataclass(frozen=True)
class RefreshGrant:
    """What a Refresh mints from: the session's grant and its account's current limits."""

    session: SessionRecord
    account: AccountLimits


def _error_kind(exc: BaseException) -> StoreErrorKind:
    if isinstance(exc, (redis.exceptions.TimeoutError, TimeoutError)):
        return StoreErrorKind.TIMEOUT
    return StoreErrorKind.CONNECTION


def _store_call(func: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Convert Redis failures into `StoreUnavailable` at the storage boundary."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        store = args[0]
        budget = store.call_budget if isinstance(store, RedisStore) else None
        try:
            # However many retries, redirects and topology refreshes a failover causes, the
            # caller gets an answer (UNAVAILABLE at worst) within the budget.
            async with asyncio.timeout(budget):
                return await func(*args, **kwargs)
        except ReplicationNotConfirmed as exc:
            log.warning("write not confirmed by replicas: %s", exc, extra={"event": "no_ack"})
            if isinstance(store, RedisStore):
                store.telemetry.store_failed(func.__name__, StoreErrorKind.TIMEOUT)
            raise StoreUnavailable("token store could not confirm the write; retry") from exc
        except UNAVAILABLE_ERRORS as exc:  # TimeoutError (the budget) is an OSError
            if isinstance(store, RedisStore):
                store.telemetry.store_failed(func.__name__, _error_kind(exc))
                await store.drop_idle_connections()
            raise StoreUnavailable() from exc
        except AttributeError as exc:
            if not closed_under_us(exc):
                raise
            if isinstance(store, RedisStore):
                store.telemetry.store_failed(func.__name__, StoreErrorKind.CONNECTION)
            raise StoreUnavailable() from exc
        except redis.exceptions.RedisError as exc:  # LOADING, OOM, ...
            if isinstance(store, RedisStore):
                store.telemetry.store_failed(func.__name__, StoreErrorKind.SERVER)
            raise StoreUnavailable(f"token store error: {type(exc).__name__}") from exc

    return wrapper


class RedisStore:
    """Async storage of accounts, sessions and revocations.

    `telemetry` hears of every failed operation (the server wiring sets it).

    Args:
        conn: the deployment's client (one Redis, Cluster or Sentinel).
        retries: retries of idempotent operations after a connection failure.
        min_replicas_ack: replicas that must acknowledge a write taking power away;
            None: 1 when the deployment has replicas, else 0 (decided at first use).
        ack_timeout: how long `WAIT` waits for them, in seconds.
        call_budget: the most seconds one store operation may take, retries included;
            None: no limit.
    """

    def __init__(
        self,
        conn: RedisConnection,
        retries: int = 2,
        min_replicas_ack: int | None = None,
        ack_timeout: float = 1.0,
        call_budget: float | None = None,
    ) -> None:
        self.call_budget = call_budget
        self._conn = conn
        self._r = conn.client
        self._retries = retries
        self.telemetry: Telemetry = NULL_TELEMETRY
        self._min_acks = min_replicas_ack
        self._wait_ms = max(1, int(ack_timeout * 1000))
        self._sharded = conn.topology is Topology.CLUSTER
        self._login_begin = self._r.register_script(store_scripts.LOGIN_BEGIN)
        self._login_finish = self._r.register_script(store_scripts.LOGIN_FINISH)
        self._is_current = self._r.register_script(store_scripts.IS_CURRENT)
        self._rehash = self._r.register_script(store_scripts.REHASH)
        publish = "SPUBLISH" if self._sharded else "PUBLISH"

        def acked(text: str) -> LuaScript:
            return LuaScript(store_scripts.with_publish(text, publish))

        self._rotate = acked(store_scripts.ROTATE)
        self._revoke_by_refresh = acked(store_scripts.REVOKE_BY_REFRESH)
        self._revoke_user = acked(store_scripts.REVOKE_USER)
        self._revoke_access = acked(store_scripts.REVOKE_ACCESS)
        self._revoke_session = acked(store_scripts.REVOKE_SESSION)
        self._update_user = acked(store_scripts.UPDATE_USER_AND_REVOKE)
        self._set_account_field = acked(store_scripts.SET_ACCOUNT_FIELD)
        self._add_signing_key = self._r.register_script(store_scripts.ADD_SIGNING_KEY)
        self._login_settle = self._r.register_script(store_scripts.LOGIN_SETTLE)
        self._budget_begin = self._r.register_script(store_scripts.BUDGET_BEGIN)
        self._budget_settle = self._r.register_script(store_scripts.BUDGET_SETTLE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float,
        connect_timeout: float,
        pool_size: int,
        retries: int,
        min_replicas_ack: int | None = None,
    ) -> RedisStore:
        """A store with every client setting explicit (not redis-py's changing defaults).

        redis-py's own retry is off: it would replay non-idempotent scripts (a rotation
        replayed after a timeout would look like token reuse). Idempotent reads and
        revocations are retried here instead, with jittered exponential backoff. WAIT
        waits at most half the socket timeout, so its answer always arrives in time; one
        operation takes at most two socket timeouts and a connect timeout in all.
        """
        conn = RedisConnection(url, ClientOptions(socket_timeout, connect_timeout, pool_size))
        budget = 2 * socket_timeout + connect_timeout
        return cls(conn, retries, min_replicas_ack, socket_timeout / 2, budget)

    @property
    def topology(self) -> Topology:
        """One Redis, Cluster or Sentinel."""
        return self._conn.topology

    async def close(self) -> None:
        """Close every connection."""
        await self._conn.close()

    async def drop_idle_connections(self) -> None:
        """After a connection error: drop idle connections (after a Redis restart they are
        all dead, and each would otherwise fail one more call) and re-read the topology."""
        await self._conn.after_connection_error()

    async def _idempotent(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run `op`, retrying connection failures; only for operations safe to repeat."""
        for attempt in range(self._retries + 1):
            try:
                return await op()
            except _MAYBE_UNAVAILABLE as exc:
                if attempt == self._retries or not (
                    isinstance(exc, UNAVAILABLE_ERRORS) or closed_under_us(exc)
                ):
                    raise
                await self.drop_idle_connections()
                await asyncio.sleep(min(0.5, 0.02 * 2**attempt) * random.random())  # noqa: S311
        raise AssertionError("unreachable")

    async def min_replicas_ack(self) -> int:
        """Replicas that must acknowledge a write taking power away (decided once)."""
        if self._min_acks is None:
            self._min_acks = 1 if await self._conn.replicas_known() else 0
            log.info(
                "revocations wait for %d replica(s)", self._min_acks,
                extra={"event": "replica_acks", "replicas": self._min_acks},
            )  # fmt: skip
        return self._min_acks

    async def _acked(
        self,
        name: str,
        script: LuaScript,
        keys: Sequence[str],
        args: Sequence[Any],
        confirm: Callable[[Any], bool] = ALWAYS,
    ) -> Any:
        """Run a script that may take power away on its slot's master; when `confirm`
        says it did, return only once enough replicas have it and its event is written
        to every subscriber (see `RedisConnection.run_script`)."""
        return await self._conn.run_script(
            script,
            keys,
            args,
            confirm=confirm,
            replicas=await self.min_replicas_ack(),
            wait_ms=self._wait_ms,
            fence_key=fence_key(name),
        )

    def _channel(self, name: str) -> str:
        return channel_for(name, self._sharded)

    @_store_call
    async def ping(self) -> bool:
        """True when Redis answers (every master, on a Cluster)."""
        return await self._conn.ping()

    # -- accounts ---------------------------------------------------------------------

    @_store_call
    async def create_account(
        self, name: str, kind: AccountKind, pwhash: str, scopes: Sequence[str], now: float
    ) -> None:
        """Create an account; raises AccountExists if the name is taken (under any spelling
        an older account's name has, see `index_legacy_names`)."""
        if await self._r.hexists(NAMES_INDEX, name):
            raise AccountExists(f"account {name!r} already exists")
        created = await self._r.hsetnx(user_key(name), "pwhash", pwhash)
        if not created:
            raise AccountExists(f"account {name!r} already exists")
        await self._r.hset(
            user_key(name),
            mapping={
                "kind": kind.value,
                "pwver": "1",
                "disabled": "0",
                "scopes": " ".join(scopes),
                "created": str(int(now)),
            },
        )
        await self._r.sadd(USERS_INDEX, name)

    @_store_call
    async def stored_name(self, spelling: str, canonical: str) -> str:
        """The name an account is stored under, for a spelling and its canonical form.

        Accounts created since names are canonical are stored under the canonical name.
        An older account stored as e.g. `Alice` is found under its exact spelling, and
        under any other (`alice`, `ALICE`) unless another account already owns that
        canonical name. One round trip (HMGET of one small hash, empty when there are no
        such accounts).
        """
        fields = (spelling, canonical) if spelling != canonical else (canonical,)
        found = cast(
            list[str | None],
            await self._idempotent(lambda: self._r.hmget(NAMES_INDEX, *fields)),
        )
        return next((name for name in found if name), canonical)

    @_store_call
    async def index_legacy_names(self) -> list[str]:
        """Index the accounts stored under a name that is not canonical (made before names
        were canonical), so `stored_name` finds them; idempotent, run at every start.

        Each is indexed under its exact spelling and, unless an account already has that
        canonical name, under its canonical name (the first such spelling in sorted order
        wins). Returns the names reachable only under their exact spelling (collisions),
        for the operator to resolve.
        """
        names = sorted(cast(set[str], await self._r.smembers(USERS_INDEX)))
        existing = set(names)
        unreachable: list[str] = []
        async with self._r.pipeline(transaction=False) as pipe:
            for name in names:
                try:
                    canonical = canonical_name(name)
                except InvalidInput:
                    canonical = ""  # not a valid name today: reachable by exact spelling
                if canonical == name:
                    continue
                pipe.hsetnx(NAMES_INDEX, name, name)
                if canonical and canonical not in existing:
                    pipe.hsetnx(NAMES_INDEX, canonical, name)
                    existing.add(canonical)
                else:
                    unreachable.append(name)
            await pipe.execute()
        return unreachable

    @_store_call
    async def get_account(self, name: str) -> Account | None:
        """The account, or None."""
        data = await self._idempotent(lambda: self._r.hgetall(user_key(name)))
        return _account(name, cast(dict[str, str], data)) if data else None

    @_store_call
    async def list_accounts(self) -> list[Account]:
        """Every account, sorted by name."""
        names = sorted(cast(set[str], await self._r.smembers(USERS_INDEX)))
        accounts = [await self.get_account(name) for name in names]
        return [a for a in accounts if a is not None]

    async def set_scopes(self, name: str, scopes: Sequence[str]) -> None:
        """Replace an account's allowed scopes (a session's next Refresh gets only those)."""
        await self._set_field(name, "scopes", " ".join(scopes))

    async def set_audiences(self, name: str, audiences: Sequence[str]) -> None:
        """Replace an account's allowed audiences (empty: the service-wide list)."""
        await self._set_field(name, "auds", " ".join(audiences))

    @_store_call
    async def _set_field(self, name: str, field: str, value: str) -> None:
        keys, args = [user_key(name)], [field, value]
        # Confirmed by the replicas: narrower scopes or audiences take power away.
        acked = self._idempotent(lambda: self._acked(name, self._set_account_field, keys, args))
        if not await acked:
            raise NotFound(f"no account {name!r}")

    async def change_password(self, name: str, pwhash: str) -> int:
        """Store a new password hash and end every session of `name` atomically.

        Returns how many sessions ended; raises NotFound if there is no such account.
        """
        return await self._update_account_and_revoke(name, "pwhash", pwhash, bump_pwver=True)

    async def disable_account(self, name: str) -> int:
        """Disable `name` and end every session atomically; returns how many ended."""
        return await self._update_account_and_revoke(name, "disabled", "1", bump_pwver=False)

    async def enable_account(self, name: str) -> None:
        """Enable `name` again (it has no sessions: disabling ended them)."""
        await self._update_account_and_revoke(name, "disabled", "0", bump_pwver=False)

    @_store_call
    async def _update_account_and_revoke(
        self, name: str, field: str, value: str, *, bump_pwver: bool
    ) -> int:
        """Set an account field and end all its sessions atomically; returns sessions ended."""
        keys = [user_key(name), sessions_key(name), session_key(name, "x")]
        args = [field, value, "x", "1" if bump_pwver else "0"]
        args += [self._channel(name), user_ended_event(name)]
        # Not retried: a password change replayed would bump pwver twice (harmless, but
        # the caller sees UNAVAILABLE and may simply run it again).
        n = await self._acked(name, self._update_user, keys, args)
        if int(n) < 0:
            raise NotFound(f"no account {name!r}")
        return int(n)

    # -- login ------------------------------------------------------------------------

    @_store_call
    async def begin_login(
        self, name: str, attempt: str, now_ms: int, lease_until_ms: int, throttle: NameThrottle
    ) -> LoginGate:
        """Count a login attempt against `name` before its password is checked; when OPEN
        the attempt holds a place until `settle_login` (or until its lease ends, when it
        counts as a failure). Not retried: a replay would hold a second place."""
        res = await self._login_begin(
            keys=[user_key(name), fails_key(name), trying_key(name)],
            args=[
                now_ms,
                throttle.max_failures,
                throttle.base_ms,
                throttle.max_ms,
                throttle.ttl_ms,
                attempt,
                lease_until_ms,
            ],
        )
        admission, retry_after_ms = _admission(res)
        if admission is not Admission.OPEN:
            return LoginGate(admission, retry_after_ms)
        _, pwhash, disabled, scopes, pwver, kind, auds = res
        if not pwhash:
            return LoginGate(Admission.OPEN)
        account = Account(
            name,
            _account_kind(kind),
            pwhash,
            pwver,
            disabled == "1",
            tuple(scopes.split()),
            audiences=tuple(auds.split()),
        )
        return LoginGate(Admission.OPEN, 0, account)

    @_store_call
    async def settle_login(
        self,
        name: str,
        attempt: str,
        now_ms: int,
        outcome: AttemptOutcome,
        throttle: NameThrottle,
    ) -> None:
        """End an attempt counted by `begin_login` (idempotent: settled once)."""
        keys = [fails_key(name), trying_key(name)]
        args: list[str | int] = [now_ms, attempt, outcome.value, throttle.max_failures]
        args += [throttle.base_ms, throttle.max_ms, throttle.ttl_ms]
        await self._idempotent(lambda: self._login_settle(keys=keys, args=args))

    @_store_call
    async def begin_budget(
        self, budget: FailureBudget, attempt: str, now_ms: int, lease_until_ms: int
    ) -> tuple[Admission, int]:
        """Count a login attempt against a source's or the global budget; returns the
        admission and, when THROTTLED, the milliseconds to wait. Not retried."""
        res = await self._budget_begin(
            keys=budget.keys(),
            args=[now_ms, budget.limit, budget.window_ms, attempt, lease_until_ms, budget.ttl_ms],
        )
        return _admission(res)

    @_store_call
    async def settle_budget(
        self, budget: FailureBudget, attempt: str, now_ms: int, outcome: AttemptOutcome
    ) -> None:
        """End an attempt counted by `begin_budget` (idempotent: settled once)."""
        keys = budget.keys()
        args: list[str | int] = [now_ms, budget.limit, budget.window_ms, attempt]
        args += [outcome.value, budget.ttl_ms]
        await self._idempotent(lambda: self._budget_settle(keys=keys, args=args))

    @_store_call
    async def finish_login(
        self,
        name: str,
        sid: str,
        *,
        pwver: str,
        digest: str,
        exp_s: int,
        abs_s: int,
        scopes: Sequence[str],
        audience: str,
        client_id: str,
        ttl_ms: int,
        now_s: int,
    ) -> bool:
        """Store a new session; False if the account was disabled or changed meanwhile."""
        keys = [user_key(name), fails_key(name), sessions_key(name), session_key(name, sid)]
        args: list[Any] = [pwver, digest, exp_s, abs_s, " ".join(scopes), audience, client_id]
        args += [ttl_ms, sid, now_s]
        return bool(await self._idempotent(lambda: self._login_finish(keys=keys, args=args)))

    @_store_call
    async def rehash_password(self, name: str, old_hash: str, new_hash: str) -> None:
        """Replace a hash made with old parameters (only if unchanged meanwhile)."""
        await self._rehash(keys=[user_key(name)], args=[old_hash, new_hash])

    # -- refresh ----------------------------------------------------------------------

    @_store_call
    async def get_refresh_grant(self, name: str, sid: str) -> RefreshGrant | None:
        """The session's grant and its account's limits (one round trip), or None if the
        session does not exist (ended, revoked, expired)."""

        async def read() -> list[Any]:
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hmget(session_key(name, sid), "scope", "aud", "cid", "abs")
                pipe.hmget(user_key(name), "scopes", "auds")
                return cast(list[Any], await pipe.execute())

        session, account = await self._idempotent(read)
        if session[0] is None:
            return None
        scope, aud, cid, abs_s = cast(list[str | None], session)
        scopes, auds = cast(list[str | None], account)
        return RefreshGrant(
            SessionRecord(tuple((scope or "").split()), aud or "", cid or "", int(abs_s or 0)),
            AccountLimits(tuple((scopes or "").split()), tuple((auds or "").split())),
        )

    @_store_call
    async def rotate(
        self,
        name: str,
        sid: str,
        *,
        now_ms: int,
        presented: str,
        successor: str,
        grace_until_ms: int,
        grace_blob: str,
        exp_s: int,
        ttl_ms: int,
        grant: RefreshGrant,
        audience_allowed: bool,
    ) -> RotateResult:
        """Retire `presented` for `successor` atomically (see `store_scripts.ROTATE`).

        `grant` is what the successor was minted from: the script refuses it (REGRANT)
        unless it is what Redis holds, and ends the session when `audience_allowed` is
        False (the account may no longer use the session's audience).

        Not retried: replaying it after a timeout must go through the grace path instead.
        """
        res = await self._acked(
            name,
            self._rotate,
            [session_key(name, sid), user_key(name), sessions_key(name)],
            [
                now_ms,
                presented,
                successor,
                grace_until_ms,
                grace_blob,
                exp_s,
                ttl_ms,
                sid,
                KEEP_RETIRED,
                self._channel(name),
                session_ended_event(name, sid),
                " ".join(grant.session.scopes),
                grant.session.audience,
                grant.session.client_id,
                " ".join(grant.account.scopes),
                " ".join(grant.account.audiences),
                "1" if audience_allowed else "0",
            ],
            # An ended session (reuse, expiry) must survive a failover; so must the
            # end an earlier attempt made, which a retry then sees as 'invalid'.
            confirm=lambda res: RotateOutcome(str(res[0])) in _CONFIRMED_OUTCOMES,
        )
        outcome = RotateOutcome(str(res[0]))
        return RotateResult(outcome, str(res[1]) if len(res) > 1 else "")

    @_store_call
    async def is_current_refresh(self, name: str, sid: str, digest: str) -> bool:
        """True when `digest` is the session's current refresh token (read only)."""
        keys = [session_key(name, sid)]
        return bool(await self._idempotent(lambda: self._is_current(keys=keys, args=[digest])))

    # -- validate / revoke ------------------------------------------------------------

    @_store_call
    async def is_access_token_live(self, name: str, sid: str, jti: str) -> bool:
        """False when the token's session is gone or this token was revoked.

        One round trip (HMGET of one key).
        """
        state = await self._idempotent(
            lambda: self._r.hmget(session_key(name, sid), "cur", "rj:" + jti)
        )
        return state[0] is not None and state[1] is None

    @_store_call
    async def revoke_access_token(self, name: str, sid: str, jti: str, exp_s: int) -> None:
        """Revoke one access token for the rest of its life."""
        keys = [session_key(name, sid)]
        args = ["rj:" + jti, str(exp_s), self._channel(name), token_revoked_event(name, sid, jti)]
        await self._idempotent(lambda: self._acked(name, self._revoke_access, keys, args))

    @_store_call
    async def revoke_session(self, name: str, sid: str) -> bool:
        """End a session: its refresh token and every access token issued in it.

        Returns whether the session still existed.
        """
        keys = [session_key(name, sid), sessions_key(name)]
        args = [sid, self._channel(name), session_ended_event(name, sid)]
        return bool(
            await self._idempotent(lambda: self._acked(name, self._revoke_session, keys, args))
        )

    @_store_call
    async def revoke_user(self, name: str) -> int:
        """End every session of `name`; returns how many."""
        keys = [sessions_key(name), session_key(name, "x")]
        args = ["x", self._channel(name), user_ended_event(name)]
        return int(await self._idempotent(lambda: self._acked(name, self._revoke_user, keys, args)))

    @_store_call
    async def revoke_by_refresh(
        self, name: str, sid: str, digest: str, everything: bool, now_ms: int
    ) -> RevokeOutcome:
        """End the session (or all of the user's) if `digest` is the session's live
        refresh token (see `store_scripts.REVOKE_BY_REFRESH`)."""
        keys = [session_key(name, sid), sessions_key(name), user_key(name)]
        event = user_ended_event(name) if everything else session_ended_event(name, sid)
        args: list[Any] = [digest, "user" if everything else "session", sid, self._channel(name)]
        args += [event, now_ms]
        return RevokeOutcome(
            str(
                await self._idempotent(
                    lambda: self._acked(name, self._revoke_by_refresh, keys, args)
                )
            )
        )

    # -- admin API: listings (sorted, paged by the last key returned) -----------------

    @_store_call
    async def list_accounts_page(self, after: str, limit: int) -> Page[Account]:
        """At most `limit` accounts whose names sort after `after`, in name order.

        Reads the whole name index (one SMEMBERS) and only the page's accounts.
        """

        async def op() -> Page[Account]:
            names = sorted(cast(set[str], await self._r.smembers(USERS_INDEX)))
            start = bisect.bisect_right(names, after)
            chunk = names[start : start + limit]
            async with self._r.pipeline(transaction=False) as pipe:
                for name in chunk:
                    pipe.hgetall(user_key(name))
                rows = cast(list[dict[str, str]], await pipe.execute())
            accounts = tuple(_account(n, row) for n, row in zip(chunk, rows, strict=True) if row)
            more = start + limit < len(names)
            return Page(accounts, chunk[-1] if more and chunk else "")

        return await self._idempotent(op)

    @_store_call
    async def list_sessions_page(self, name: str, after: str, limit: int) -> Page[SessionInfo]:
        """At most `limit` live sessions of `name` whose ids sort after `after`, in id order.

        The index may still list sessions that ended; they are skipped.
        """

        async def op() -> Page[SessionInfo]:
            sids = sorted(cast(set[str], await self._r.smembers(sessions_key(name))))
            i = bisect.bisect_right(sids, after)
            found: list[SessionInfo] = []
            while i < len(sids) and len(found) < limit:
                chunk = sids[i : i + limit - len(found)]
                async with self._r.pipeline(transaction=False) as pipe:
                    for sid in chunk:
                        pipe.hmget(session_key(name, sid), *_SESSION_FIELDS)
                    rows = cast(list[list[str | None]], await pipe.execute())
                live = zip(chunk, rows, strict=True)
                found += [_session(sid, row) for sid, row in live if row[0] is not None]
                i += len(chunk)
            return Page(tuple(found), sids[i - 1] if i < len(sids) else "")

        return await self._idempotent(op)

    # -- signing-key ring (see keyring.py; private keys arrive and leave sealed) ---------

    @_store_call
    async def signing_keys(self) -> list[StoredSigningKey]:
        """Every well-formed key record of the ring, in kid order."""
        raw = cast(dict[str, str], await self._idempotent(lambda: self._r.hgetall(SIGNING_KEYS)))
        records = (StoredSigningKey.from_json(kid, value) for kid, value in sorted(raw.items()))
        return [r for r in records if r is not None]

    @_store_call
    async def add_signing_key(
        self, key: StoredSigningKey, condition: AddKeyIf, due_before_ms: int = 0
    ) -> bool:
        """Add a key record if `condition` holds (atomically); True if it was added."""
        args = [key.kid, key.to_json(), condition.value, due_before_ms]
        return bool(await self._add_signing_key(keys=[SIGNING_KEYS], args=args))

    @_store_call
    async def remove_signing_keys(self, kids: Sequence[str]) -> None:
        """Delete key records (retired keys whose tokens have all expired)."""
        if kids:
            await self._idempotent(lambda: self._r.hdel(SIGNING_KEYS, *kids))


_MAYBE_UNAVAILABLE: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, AttributeError)
_CONFIRMED_OUTCOMES = (RotateOutcome.REUSE, RotateOutcome.ENDED, RotateOutcome.INVALID)
_SESSION_FIELDS = ("cur", "created", "refreshed", "cid", "scope", "aud", "exp", "abs")


def _session(sid: str, row: list[str | None]) -> SessionInfo:
    _, created, refreshed, cid, scope, aud, exp, abs_s = row
    return SessionInfo(
        session_id=sid,
        created=_int(created),
        refreshed=_int(refreshed),
        client_id=cid or "",
        scopes=tuple((scope or "").split()),
        audience=aud or "",
        refresh_expires_at=_int(exp),
        absolute_expires_at=_int(abs_s),
    )


def _account_kind(stored: str) -> AccountKind:
    """The kind of a stored account; anything unknown is the least privileged, a user."""
    return AccountKind.CLIENT if stored == AccountKind.CLIENT.value else AccountKind.USER


def _account(name: str, data: dict[str, str]) -> Account:
    return Account(
        name=name,
        kind=_account_kind(data.get("kind", "")),
        pwhash=data.get("pwhash", ""),
        pwver=data.get("pwver", "1"),
        disabled=data.get("disabled") == "1",
        scopes=tuple(data.get("scopes", "").split()),
        created=_int(data.get("created")),
        audiences=tuple(data.get("auds", "").split()),
    )


def _int(stored: str | None) -> int:
    """A stored integer field; 0 when absent (or not a number: never raise on old data)."""
    try:
        return int(stored or 0)
    except ValueError:
        return 0
