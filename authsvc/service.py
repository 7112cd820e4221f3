"""The domain: log in, refresh, validate and revoke. Knows nothing of gRPC.

Every method raises only `AuthsvcError` subclasses; Validate returns an answer (valid or
the reason it is not) rather than raising for a bad token.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet

from authsvc_client.cache import LruCache

from authsvc import events, grace
from authsvc.admin_auth import Admin, AdminAuthenticator
from authsvc.caller import UNKNOWN_CALLER, Caller
from authsvc.clock import Clock, system_clock
from authsvc.config import Settings
from authsvc.errors import (
    AudienceNotAllowed,
    CallerUnauthenticated,
    InvalidCredentials,
    InvalidInput,
    InvalidRefreshToken,
    NotAuthorized,
    ScopeNotAllowed,
    StoreUnavailable,
)
from authsvc.grace import GraceAnswer
from authsvc.keys import KeyProvider
from authsvc.login_guard import LoginGuard
from authsvc.names import STORED_NAME_RE, canonical_name
from authsvc.passwords import MAX_SECRET_BYTES, PasswordHasher
from authsvc.revocation_view import RevocationView
from authsvc.store import (
    AccountKind,
    RedisStore,
    RefreshGrant,
    RevokeOutcome,
    RotateOutcome,
    SessionRecord,
    session_ended_event,
    token_revoked_event,
    user_ended_event,
)
from authsvc.telemetry import NULL_TELEMETRY, Telemetry
from authsvc.tokens import (
    MAX_TOKEN_LENGTH,
    AccessClaims,
    AccessTokenCodec,
    Invalid,
    RefreshToken,
    TokenInvalid,
    looks_like_refresh_token,
    new_refresh_token,
    new_session_id,
    parse_refresh_token,
    token_digest,
)

log = logging.getLogger(__name__)

#: Names as stored (and carried in tokens): canonical, or an older account's capitals.
NAME_RE = STORED_NAME_RE
SCOPE_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")  # RFC 6749 scope-token
MAX_SCOPES = 64
AUDIENCE_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,128}")  # printable, no space or comma
MAX_AUDIENCES = 64
_NEEDS_ADMIN = (
    "ending a session or all of a user's sessions takes the session's refresh token "
    "or an administrator (an admin access token in the authorization metadata, or an "
    "allow-listed client certificate)"
)
_GRANT_CACHE_SIZE = 100_000
_REFRESH_OUTCOMES = {
    RotateOutcome.ROTATED: events.RefreshOutcome.ROTATED,
    RotateOutcome.GRACE: events.RefreshOutcome.GRACE_REPLAY,
    RotateOutcome.REUSE: events.RefreshOutcome.REUSE_DETECTED,
    RotateOutcome.ENDED: events.RefreshOutcome.REFUSED,
    RotateOutcome.INVALID: events.RefreshOutcome.REFUSED,
    RotateOutcome.REGRANT: events.RefreshOutcome.REFUSED,
}


def _allowed_scopes(grant: RefreshGrant) -> set[str]:
    """The scopes a Refresh may grant: the session's, less those its account lost."""
    return set(grant.session.scopes).intersection(grant.account.scopes)


class RevokeWhat(enum.Enum):
    """What a Revoke ends."""

    TOKEN = "token"
    SESSION = "session"
    USER = "user"


@dataclasses.dataclass(frozen=True)
class IssuedTokens:
    """A token pair as returned to the caller."""

    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    scopes: tuple[str, ...]
    session_id: str


@dataclasses.dataclass(frozen=True)
class Validation:
    """The answer of Validate."""

    valid: bool
    reason: Invalid | None = None
    claims: AccessClaims | None = None


def validate_name(name: str) -> str:
    """Check an account name; returns its canonical form (see `authsvc.names`).

    Raises:
        InvalidInput: naming the rule (never repeating the name).
    """
    return canonical_name(name)


def validate_secret(secret: str, what: str = "password") -> str:
    """Check a password or client secret's size (taken byte-exact, never stripped)."""
    if not secret:
        raise InvalidInput(f"{what} is required")
    try:
        size = len(secret.encode())
    except UnicodeEncodeError:  # lone surrogates (e.g. undecodable bytes from a shell)
        raise InvalidInput(f"{what} is not valid Unicode") from None
    if size > MAX_SECRET_BYTES:
        raise InvalidInput(f"{what} is longer than {MAX_SECRET_BYTES} bytes")
    return secret


def validate_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    """Check scope tokens (RFC 6749 syntax); returns them de-duplicated in order."""
    if len(scopes) > MAX_SCOPES:
        raise InvalidInput(f"at most {MAX_SCOPES} scopes")
    for scope in scopes:
        if not SCOPE_RE.fullmatch(scope):
            raise InvalidInput("scopes must be 1-128 printable characters without spaces")
    return tuple(dict.fromkeys(scopes))


def validate_audiences(audiences: Sequence[str]) -> tuple[str, ...]:
    """Check an account's allowed audiences; returns them de-duplicated in order."""
    if len(audiences) > MAX_AUDIENCES:
        raise InvalidInput(f"at most {MAX_AUDIENCES} audiences")
    for audience in audiences:
        if not AUDIENCE_RE.fullmatch(audience):
            raise InvalidInput(
                "audiences must be 1-128 printable characters without spaces or commas"
            )
    return tuple(dict.fromkeys(audiences))


class AuthService:
    """Login, Refresh, Validate, Revoke and the JWKS, over a store and a key set."""

    def __init__(
        self,
        settings: Settings,
        store: RedisStore,
        keys: KeyProvider,
        hasher: PasswordHasher,
        clock: Clock = system_clock,
        view: RevocationView | None = None,
        sink: events.EventSink | None = None,
        telemetry: Telemetry = NULL_TELEMETRY,
    ) -> None:
        self._s = settings
        self._events: events.EventSink = sink or events.NullSink()
        self._telemetry = telemetry
        self._view = view
        self._store = store
        self._hasher = hasher
        self._clock = clock
        #: Where the signing and verification keys come from (files, or the Redis ring).
        self.keys = keys
        self._codec = AccessTokenCodec(
            keys, settings.issuer, settings.allowed_audiences, settings.leeway_seconds
        )
        self.admins = AdminAuthenticator(settings, self._codec, store, clock, keys)
        self.logins = LoginGuard(settings, store, clock, self._events)
        # What a Refresh mints from: the session's grant (never changes) and its account's
        # scopes and audiences (change when an operator takes privileges away). An instance
        # remembers both, so a steady-state Refresh is one Redis round trip; the rotation
        # script compares them with what Redis holds and answers REGRANT when they differ,
        # so a stale entry costs one more read, never a stale privilege.
        self._grants: LruCache[tuple[str, str], RefreshGrant] = LruCache(_GRANT_CACHE_SIZE)

    async def jwks(self) -> str:
        """The JWK Set of the verification keys now (answered from memory while Redis is
        down, once the keys have been loaded).

        Raises:
            StoreUnavailable: the keys have never been loaded.
        """
        await self._follow_keys()
        return self.keys.current.jwks_json()

    async def _follow_keys(self) -> None:
        """Pick up a rotation (a cheap check; a Redis read every few seconds at most)."""
        if self.keys.due():
            await self.keys.refresh()

    # -- Login ------------------------------------------------------------------------

    async def login(
        self,
        username: str,
        password: str,
        audience: str,
        scopes: Sequence[str],
        caller: Caller = UNKNOWN_CALLER,
    ) -> IssuedTokens:
        """Check credentials and open a session.

        Raises:
            InvalidInput, InvalidCredentials, LoginThrottled, LoginBusy, ScopeNotAllowed,
            AudienceNotAllowed, StoreUnavailable.
        """
        username = await self._store.stored_name(username, validate_name(username))
        validate_secret(password)
        asked = validate_scopes(scopes)
        audience = self._audience(audience)
        await self._follow_keys()
        new_hash: str | None = None
        async with self.logins.attempt(username, caller.source) as attempt:
            account = attempt.account
            async with attempt.password_check():
                ok = await self._hasher.verify_async(account.pwhash if account else None, password)
                if ok and account is not None and self._hasher.needs_rehash(account.pwhash):
                    new_hash = await self._hasher.hash_async(password)
            if account is None or not ok or account.disabled:
                log.info("login failed", extra={"event": "login_failed"})
                self._events.emit(
                    events.LoginFailed(username, caller.source, events.LoginFailure.BAD_CREDENTIALS)
                )
                raise InvalidCredentials()
            attempt.passed()  # the password was right: whatever follows is no failed guess
        granted = asked or account.scopes
        if not set(granted) <= set(account.scopes):
            self._events.emit(
                events.LoginFailed(username, caller.source, events.LoginFailure.DENIED_SCOPE)
            )
            raise ScopeNotAllowed("requested scopes are not allowed for this account")
        if audience not in self._audiences_for(account.audiences):
            self._events.emit(
                events.LoginFailed(username, caller.source, events.LoginFailure.DENIED_AUDIENCE)
            )
            raise AudienceNotAllowed()
        now = self._clock()
        sid = new_session_id()
        refresh = new_refresh_token(username, sid)
        abs_s = int(now) + self._s.session_max_seconds
        exp_s = min(int(now) + self._s.refresh_ttl_seconds, abs_s)
        access, claims = self._codec.mint(
            subject=username,
            session_id=sid,
            scopes=granted,
            audience=audience,
            client_id=username if account.kind is AccountKind.CLIENT else "",
            now=now,
            ttl=self._s.access_ttl_seconds,
        )
        stored = await self._store.finish_login(
            username,
            sid,
            pwver=account.pwver,
            digest=refresh.digest,
            exp_s=exp_s,
            abs_s=abs_s,
            scopes=granted,
            audience=audience,
            client_id=claims.client_id,
            ttl_ms=self._session_ttl_ms(now, exp_s),
            now_s=int(now),
        )
        if not stored:
            raise InvalidCredentials()
        self._remember_grant(
            username,
            sid,
            RefreshGrant(SessionRecord(granted, audience, claims.client_id, abs_s), account.limits),
        )
        if new_hash is not None:
            await self._store.rehash_password(username, account.pwhash, new_hash)
        log.info("login", extra={"event": "login", "sid": sid})
        self._events.emit(events.LoginSucceeded(username, caller.source, sid))
        return IssuedTokens(
            access, refresh.raw, self._s.access_ttl_seconds, exp_s - int(now), granted, sid
        )

    def _audience(self, audience: str) -> str:
        if not audience:
            return self._s.default_audience
        if audience not in self._s.allowed_audiences:
            raise InvalidInput("unknown audience")
        return audience

    def _audiences_for(self, allowed: tuple[str, ...]) -> AbstractSet[str]:
        """The audiences an account with these allowed audiences may have tokens for: the
        service-wide list, narrowed to the account's own list when it has one."""
        if not allowed:
            return self._s.allowed_audiences
        return self._s.allowed_audiences.intersection(allowed)

    def _session_ttl_ms(self, now: float, exp_s: int) -> int:
        """Redis TTL of a session: until its refresh token ends plus the last access token."""
        live = exp_s - now + self._s.access_ttl_seconds + self._s.leeway_seconds + 60
        return max(1000, int(live * 1000))

    # -- Refresh ----------------------------------------------------------------------

    async def refresh(
        self, refresh_token: str, scopes: Sequence[str], caller: Caller = UNKNOWN_CALLER
    ) -> IssuedTokens:
        """Rotate a refresh token into a new pair.

        A retry of the same token within the grace window gets back the same pair; any
        other presentation of a retired token is reuse and ends the session.

        Raises:
            InvalidInput, InvalidRefreshToken, ScopeNotAllowed, StoreUnavailable.
        """
        if not refresh_token:
            raise InvalidInput("refresh_token is required")
        if len(refresh_token) > MAX_TOKEN_LENGTH:
            raise InvalidInput("refresh_token is too long")
        narrowed = validate_scopes(scopes)
        await self._follow_keys()
        presented = parse_refresh_token(refresh_token)
        if presented is None or not NAME_RE.fullmatch(presented.subject):
            self._events.emit(
                events.Refreshed("", caller.source, "", events.RefreshOutcome.UNKNOWN)
            )
            raise InvalidRefreshToken()
        name, sid = presented.subject, presented.session_id
        remembered = self._grants.get((name, sid))
        grant = remembered or await self._read_grant(name, sid, caller)
        if remembered and narrowed and not set(narrowed) <= _allowed_scopes(grant):
            grant = await self._read_grant(name, sid, caller)  # refuse on what Redis holds
        outcome, answer = await self._rotate(refresh_token, presented, grant, narrowed)
        if outcome is RotateOutcome.REGRANT:  # the remembered grant is not the session's
            grant = await self._read_grant(name, sid, caller)
            outcome, answer = await self._rotate(refresh_token, presented, grant, narrowed)
        if outcome.ended_session:
            self._grants.pop((name, sid))
            if self._view is not None:
                self._view.apply(session_ended_event(name, sid))
            if outcome is RotateOutcome.REUSE:
                log.warning("refresh token reused; session ended", extra={"event": "reuse"})
        self._events.emit(events.Refreshed(name, caller.source, sid, _REFRESH_OUTCOMES[outcome]))
        if outcome not in (RotateOutcome.ROTATED, RotateOutcome.GRACE):
            raise InvalidRefreshToken()
        now = int(self._clock())
        return IssuedTokens(
            answer.access_token,
            answer.refresh_token,
            max(0, answer.access_expires_at - now),
            max(0, answer.refresh_expires_at - now),
            answer.scopes,
            sid,
        )

    async def _read_grant(self, name: str, sid: str, caller: Caller) -> RefreshGrant:
        """The session's grant and its account's limits from Redis, remembered."""
        grant = await self._store.get_refresh_grant(name, sid)
        if grant is None:
            self._events.emit(
                events.Refreshed(name, caller.source, sid, events.RefreshOutcome.UNKNOWN)
            )
            raise InvalidRefreshToken()
        self._remember_grant(name, sid, grant)
        return grant

    def _remember_grant(self, name: str, sid: str, grant: RefreshGrant) -> None:
        self._grants.put((name, sid), grant)

    async def _rotate(
        self,
        refresh_token: str,
        presented: RefreshToken,
        grant: RefreshGrant,
        narrowed: tuple[str, ...],
    ) -> tuple[RotateOutcome, GraceAnswer]:
        """Mint the successor pair from the session's grant, less what the account may no
        longer have, and rotate atomically.

        Returns the script's outcome and the answer: the new pair, or on a retry within
        the grace window the pair the first call returned.
        """
        name, sid = presented.subject, presented.session_id
        session, account = grant.session, grant.account
        allowed = _allowed_scopes(grant)
        if narrowed and not set(narrowed) <= allowed:
            # Say so only to the holder of the live token; anything else is just unusable.
            if await self._store.is_current_refresh(name, sid, presented.digest):
                raise ScopeNotAllowed("a refresh may narrow scopes, never widen them")
            raise InvalidRefreshToken()
        granted = narrowed or tuple(s for s in session.scopes if s in allowed)
        now = self._clock()
        successor = new_refresh_token(name, sid)
        exp_s = min(int(now) + self._s.refresh_ttl_seconds, session.absolute_exp)
        access, _ = self._codec.mint(
            subject=name,
            session_id=sid,
            scopes=granted,
            audience=session.audience,
            client_id=session.client_id,
            now=now,
            ttl=self._s.access_ttl_seconds,
        )
        answer = GraceAnswer(
            access_token=access,
            refresh_token=successor.raw,
            access_expires_at=int(now) + self._s.access_ttl_seconds,
            refresh_expires_at=exp_s,
            scopes=granted,
        )
        grace_s = self._s.refresh_grace_seconds
        result = await self._store.rotate(
            name,
            sid,
            now_ms=int(now * 1000),
            presented=presented.digest,
            successor=successor.digest,
            grace_until_ms=int((now + grace_s) * 1000),
            grace_blob=grace.seal(refresh_token, answer) if grace_s else "",
            exp_s=exp_s,
            ttl_ms=self._session_ttl_ms(now, exp_s),
            grant=grant,
            audience_allowed=session.audience in self._audiences_for(account.audiences),
        )
        if result.outcome is RotateOutcome.GRACE:
            retried = grace.unseal(refresh_token, result.sealed_answer)
            if retried is None:
                return RotateOutcome.INVALID, answer
            return RotateOutcome.GRACE, retried
        return result.outcome, answer

    # -- Validate ---------------------------------------------------------------------

    async def validate(
        self, access_token: str, audience: str, required_scopes: Sequence[str]
    ) -> Validation:
        """Check an access token: signature, claims, scopes, then revocation (one round trip).

        Raises:
            InvalidInput: empty or oversized token; no audience while
                AUTHSVC_VALIDATE_REQUIRE_AUDIENCE is on.
            StoreUnavailable: the revocation check could not be made (fail closed).
        """
        if not access_token:
            raise InvalidInput("access_token is required")
        if len(access_token) > MAX_TOKEN_LENGTH:
            raise InvalidInput("access_token is too long")
        if not audience and self._s.validate_require_audience:
            # A resource service that forgets to name itself would accept tokens minted
            # for any other: refuse loudly rather than answer for every audience.
            raise InvalidInput("audience is required (AUTHSVC_VALIDATE_REQUIRE_AUDIENCE)")
        if self.keys.due():  # inline: Validate is the hot path
            await self.keys.refresh()
        try:
            claims = self._codec.verify(access_token, self._clock(), audience)
        except TokenInvalid as exc:
            self._telemetry.validated(exc.reason)
            return Validation(False, exc.reason)
        if required_scopes and not set(required_scopes) <= set(claims.scopes):
            self._telemetry.validated(Invalid.INSUFFICIENT_SCOPE)
            return Validation(False, Invalid.INSUFFICIENT_SCOPE)
        view = self._view
        if view is not None and view.is_alive(claims.subject, claims.session_id, claims.token_id):
            self._telemetry.validated(None, view_hit=True)
            return Validation(True, None, claims)
        generation = view.generation if view is not None else 0
        view_hit = False if view is not None else None
        if not await self._store.is_access_token_live(
            claims.subject, claims.session_id, claims.token_id
        ):
            self._telemetry.validated(Invalid.REVOKED, view_hit)
            return Validation(False, Invalid.REVOKED)
        if view is not None:
            view.remember(claims.subject, claims.session_id, claims.token_id, generation)
        self._telemetry.validated(None, view_hit)
        return Validation(True, None, claims)

    # -- Revoke -----------------------------------------------------------------------

    async def revoke(self, token: str, what: RevokeWhat, caller: Caller = UNKNOWN_CALLER) -> None:
        """Revoke a token, its session or its user. Unknown or invalid tokens are a no-op
        (RFC 7009); only tokens this service issued can revoke anything.

        An access token alone revokes only itself: access tokens travel to every resource
        service and end up in logs. Ending its session or its user takes the session's
        live refresh token (the holder's own credential), or an administrator caller
        (`AdminAuthenticator`).

        Raises:
            InvalidInput: empty or oversized token.
            NotAuthorized: SESSION or USER with a live access token, from a caller that is
                not an administrator.
            CallerUnauthenticated: the same, with an `authorization` token that is not a
                live one (so an administrator learns their own token is the problem).
            StoreUnavailable: the revocation could not be stored.
        """
        if not token:
            raise InvalidInput("token is required")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidInput("token is too long")
        await self._follow_keys()
        if looks_like_refresh_token(token):
            await self._revoke_by_refresh(token, what, caller)
            return
        now = self._clock()
        try:
            claims = self._codec.verify(token, now)
        except TokenInvalid:
            return  # expired, forged or malformed: nothing to revoke
        sub, sid = claims.subject, claims.session_id
        by = caller.source
        if what is not RevokeWhat.TOKEN:
            # Only a live token may end sessions: a revoked one (or one of an ended
            # session) must not log its user out of the sessions opened since.
            if not await self._store.is_access_token_live(sub, sid, claims.token_id):
                return
            by = (await self._admin_to_revoke(caller, sub, sid, what)).name
        if what is RevokeWhat.USER:
            await self._store.revoke_user(sub)
            self._apply(user_ended_event(sub))
        elif what is RevokeWhat.SESSION:
            await self._store.revoke_session(sub, sid)
            self._apply(session_ended_event(sub, sid))
        else:
            # Kept until the token fails verification on its own, leeway included.
            until = claims.expires_at + self._s.leeway_seconds
            await self._store.revoke_access_token(sub, sid, claims.token_id, until)
            self._apply(token_revoked_event(sub, sid, claims.token_id))
        self._revoked(sub, sid, what, caller, by)

    async def _revoke_by_refresh(self, token: str, what: RevokeWhat, caller: Caller) -> None:
        """End the session of a live refresh token (or, for USER, every session of its
        user). A retired one has no power left past the grace window."""
        parsed = parse_refresh_token(token)
        if parsed is None or not NAME_RE.fullmatch(parsed.subject):
            return
        name, sid = parsed.subject, parsed.session_id
        everything = what is RevokeWhat.USER
        ended = RevokeWhat.USER if everything else RevokeWhat.SESSION
        outcome = await self._store.revoke_by_refresh(
            name, sid, token_digest(token), everything, int(self._clock() * 1000)
        )
        if outcome is RevokeOutcome.STALE:
            self._events.emit(
                events.RevokeRefused(
                    name, caller.source, sid, ended.value,
                    events.RevokeRefusal.STALE_REFRESH_TOKEN,
                )
            )  # fmt: skip
        if outcome is not RevokeOutcome.REVOKED:
            return
        self._apply(user_ended_event(name) if everything else session_ended_event(name, sid))
        self._revoked(name, sid, ended, caller, caller.source)

    async def _admin_to_revoke(
        self, caller: Caller, account: str, sid: str, what: RevokeWhat
    ) -> Admin:
        """The administrator allowed to end `account`'s session or sessions with an access
        token; raises (and records a RevokeRefused event) when the caller is not one."""
        try:
            return await self.admins.require_admin(caller)
        except (CallerUnauthenticated, NotAuthorized) as exc:
            self._events.emit(
                events.RevokeRefused(
                    account, caller.source, sid, what.value,
                    events.RevokeRefusal.NOT_ADMINISTRATOR,
                )
            )  # fmt: skip
            if isinstance(exc, CallerUnauthenticated) and caller.bearer_token:
                raise
            raise NotAuthorized(_NEEDS_ADMIN) from None

    def _revoked(self, account: str, sid: str, what: RevokeWhat, caller: Caller, by: str) -> None:
        self._events.emit(events.Revoked(account, caller.source, sid, what.value, by=by))

    def _apply(self, event: str) -> None:
        """Apply our own revocation to the local view at once (the pub/sub copy follows)."""
        if self._view is not None:
            self._view.apply(event)

    async def healthy(self) -> bool:
        """True when the store answers."""
        try:
            return await self._store.ping()
        except StoreUnavailable:
            return False
