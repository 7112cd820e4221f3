"""Account administration: the domain operations behind `authsvc user ...` / `client ...`.

Validates names, secrets and scopes, hashes secrets, and calls the store's named
operations. Knows nothing of gRPC or of the command line.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from authsvc import events
from authsvc.caller import LOCAL_OPERATOR, Caller
from authsvc.clock import Clock, system_clock
from authsvc.passwords import PasswordHasher
from authsvc.service import validate_name, validate_scopes, validate_secret
from authsvc.store import Account, AccountKind, RedisStore

CLIENT_SECRET_BYTES = 32


class AccountAdmin:
    """Create, change, disable and list accounts (users and service accounts).

    Every change is emitted as an `AccountChanged` event naming who made it (`by`).
    """

    def __init__(
        self,
        store: RedisStore,
        hasher: PasswordHasher,
        clock: Clock = system_clock,
        sink: events.EventSink | None = None,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._events: events.EventSink = sink or events.NullSink()

    def _changed(self, name: str, action: str, by: Caller, ended: int = 0) -> None:
        self._events.emit(events.AccountChanged(name, by.source, action, by.source, ended))

    async def add_user(
        self, name: str, password: str, scopes: Sequence[str], by: Caller = LOCAL_OPERATOR
    ) -> None:
        """Create a user account.

        Raises:
            InvalidInput: bad name, password or scopes.
            AccountError: the name is taken.
        """
        name, allowed = validate_name(name), validate_scopes(scopes)
        pwhash = await self._hasher.hash_async(validate_secret(password))
        await self._store.create_account(name, AccountKind.USER, pwhash, allowed, self._clock())
        self._changed(name, "user_created", by)

    async def add_client(
        self, name: str, scopes: Sequence[str], by: Caller = LOCAL_OPERATOR
    ) -> str:
        """Create a service account; returns its generated secret (the only copy)."""
        name, allowed = validate_name(name), validate_scopes(scopes)
        secret = secrets.token_urlsafe(CLIENT_SECRET_BYTES)
        pwhash = await self._hasher.hash_async(secret)
        await self._store.create_account(name, AccountKind.CLIENT, pwhash, allowed, self._clock())
        self._changed(name, "client_created", by)
        return secret

    async def change_password(self, name: str, password: str, by: Caller = LOCAL_OPERATOR) -> int:
        """Set a new password and end every session; returns how many ended."""
        name = validate_name(name)
        pwhash = await self._hasher.hash_async(validate_secret(password))
        ended = await self._store.change_password(name, pwhash)
        self._changed(name, "password_changed", by, ended)
        return ended

    async def disable(self, name: str, by: Caller = LOCAL_OPERATOR) -> int:
        """Disable an account and end every session; returns how many ended."""
        ended = await self._store.disable_account(validate_name(name))
        self._changed(name, "disabled", by, ended)
        return ended

    async def enable(self, name: str, by: Caller = LOCAL_OPERATOR) -> None:
        """Enable a disabled account."""
        await self._store.enable_account(validate_name(name))
        self._changed(name, "enabled", by)

    async def set_scopes(
        self, name: str, scopes: Sequence[str], by: Caller = LOCAL_OPERATOR
    ) -> None:
        """Replace the scopes an account may be granted."""
        await self._store.set_scopes(validate_name(name), validate_scopes(scopes))
        self._changed(name, "scopes_set", by)

    async def list(self) -> list[Account]:
        """Every account, sorted by name."""
        return await self._store.list_accounts()
