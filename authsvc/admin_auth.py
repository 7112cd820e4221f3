"""Who is an administrator: the one rule the admin API and privileged Revokes share.

A caller is an administrator when either
  * its verified mTLS client certificate names an identity in `AUTHSVC_ADMIN_IDENTITIES`, or
  * it sends `authorization: Bearer <access token>` where the token verifies, is for
    authsvc's own audience (`AUTHSVC_DEFAULT_AUDIENCE`), carries `AUTHSVC_ADMIN_SCOPE`, is
    not revoked, and its account is still enabled and still allowed that scope (read from
    Redis on every call: taking the scope away takes effect at once, not at expiry).
"""

from __future__ import annotations

import dataclasses

from authsvc.caller import Caller
from authsvc.clock import Clock
from authsvc.config import Settings
from authsvc.errors import CallerUnauthenticated, NotAuthorized
from authsvc.keys import KeyProvider
from authsvc.store import RedisStore
from authsvc.tokens import MAX_TOKEN_LENGTH, AccessTokenCodec, TokenInvalid


@dataclasses.dataclass(frozen=True)
class Admin:
    """An authenticated administrator; `name` is what audit events record as `by`, and
    `source` where the call came from (`Caller.source`)."""

    name: str
    source: str = dataclasses.field(default="", compare=False)


#: Who made a change: a caller (the CLI is `LOCAL_OPERATOR`) or an authenticated administrator.
Actor = Caller | Admin


def actor_name(by: Actor) -> str:
    """What events record as `by`: the administrator's name, else the caller's source."""
    return by.name if isinstance(by, Admin) else by.source


class AdminAuthenticator:
    """Decides whether a caller is an administrator."""

    def __init__(
        self,
        settings: Settings,
        codec: AccessTokenCodec,
        store: RedisStore,
        clock: Clock,
        keys: KeyProvider | None = None,
    ) -> None:
        self._s = settings
        self._codec = codec
        self._store = store
        self._clock = clock
        self._keys = keys

    async def require_admin(self, caller: Caller) -> Admin:
        """The administrator making this call.

        Raises:
            CallerUnauthenticated: no certificate on the allow-list and no usable token.
            NotAuthorized: a valid token, but not an administrator's.
            StoreUnavailable: the token's revocation state could not be read.
        """
        admin = await self.admin_or_none(caller)
        if admin is not None:
            return admin
        if caller.bearer_token and await self._verified_subject(caller.bearer_token):
            raise NotAuthorized()
        raise CallerUnauthenticated()

    async def admin_or_none(self, caller: Caller) -> Admin | None:
        """The administrator making this call, or None when it is not one."""
        for identity in caller.tls_identities:
            if identity in self._s.admin_identities:
                return Admin("mtls:" + identity, caller.source)
        if not caller.bearer_token:
            return None
        subject = await self._verified_subject(caller.bearer_token, need_admin_scope=True)
        return Admin("token:" + subject, caller.source) if subject else None

    async def _verified_subject(self, token: str, need_admin_scope: bool = False) -> str:
        """The subject of a live, verified token for authsvc itself; "" otherwise."""
        if len(token) > MAX_TOKEN_LENGTH:
            return ""
        if self._keys is not None and self._keys.due():  # follow a rotation
            await self._keys.refresh()
        try:
            claims = self._codec.verify(token, self._clock(), self._s.default_audience)
        except TokenInvalid:
            return ""
        scope = self._s.admin_scope
        if need_admin_scope and scope not in claims.scopes:
            return ""
        if not await self._store.is_access_token_live(
            claims.subject, claims.session_id, claims.token_id
        ):
            return ""
        if need_admin_scope:
            account = await self._store.get_account(claims.subject)
            if account is None or account.disabled or scope not in account.scopes:
                return ""
        return claims.subject
