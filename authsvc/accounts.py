"""Account administration: the domain operations behind `authsvc user ...` / `client ...`.

Validates names, secrets, scopes and audiences, hashes secrets, and calls the store's named
operations. New accounts get the canonical form of the name they are given; the other
operations find an account under any spelling of its name (`authsvc.names`). Knows nothing
of gRPC or of the command line.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
import secrets
from collections.abc import Sequence
from typing import Generic, TypeVar

from authsvc import events
from authsvc.admin_auth import Actor, actor_name
from authsvc.caller import LOCAL_OPERATOR
from authsvc.clock import Clock, system_clock
from authsvc.errors import InvalidInput, NotFound
from authsvc.passwords import PasswordHasher
from authsvc.service import validate_audiences, validate_name, validate_scopes, validate_secret
from authsvc.store import Account, AccountKind, RedisStore, SessionInfo

CLIENT_SECRET_BYTES = 32
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_PAGE_TOKEN = 1024

ItemT = TypeVar("ItemT")


@dataclasses.dataclass(frozen=True)
class Listing(Generic[ItemT]):
    """One page of a listing; pass `next_page_token` back for the next ("" = no more)."""

    items: tuple[ItemT, ...]
    next_page_token: str


def validate_session_id(session_id: str) -> str:
    """Check the shape of a session id (what `tokens.new_session_id` makes)."""
    if not SESSION_ID_RE.fullmatch(session_id):
        raise InvalidInput("session_id must be 1-64 characters of A-Z a-z 0-9 _ -")
    return session_id


def page_size_of(page_size: int) -> int:
    """0 means the default; larger than the maximum is clamped (AIP-158); below 0 is refused."""
    if page_size < 0:
        raise InvalidInput("page_size must not be negative")
    return min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(listing: str, after: str) -> str:
    """An opaque token continuing `listing` after the key `after` ("" when `after` is)."""
    if not after:
        return ""
    raw = json.dumps({"l": listing, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_page_token(listing: str, token: str) -> str:
    """The key a page token continues after; "" for no token.

    Raises:
        InvalidInput: not a token this listing handed out.
    """
    if not token:
        return ""
    try:
        if len(token) > _MAX_PAGE_TOKEN:
            raise ValueError("too long")
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if doc["l"] != listing or not isinstance(doc["a"], str) or not doc["a"]:
            raise ValueError("another listing")
        return str(doc["a"])
    except (ValueError, TypeError, KeyError, binascii.Error, RecursionError):
        raise InvalidInput("page_token is not one this listing returned") from None


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

    def _changed(self, name: str, action: str, by: Actor, ended: int = 0) -> None:
        self._events.emit(events.AccountChanged(name, by.source, action, actor_name(by), ended))

    async def _existing(self, spelling: str) -> str:
        """The stored name of the account `spelling` names (see `RedisStore.stored_name`)."""
        return await self._store.stored_name(spelling, validate_name(spelling))

    async def add_user(
        self, name: str, password: str, scopes: Sequence[str], by: Actor = LOCAL_OPERATOR
    ) -> None:
        """Create a user account.

        Raises:
            InvalidInput: bad name, password or scopes.
            AccountExists: the name is taken.
        """
        name, allowed = validate_name(name), validate_scopes(scopes)
        pwhash = await self._hasher.hash_async(validate_secret(password))
        await self._store.create_account(name, AccountKind.USER, pwhash, allowed, self._clock())
        self._changed(name, "user_created", by)

    async def add_client(self, name: str, scopes: Sequence[str], by: Actor = LOCAL_OPERATOR) -> str:
        """Create a service account; returns its generated secret (the only copy)."""
        name, allowed = validate_name(name), validate_scopes(scopes)
        secret = secrets.token_urlsafe(CLIENT_SECRET_BYTES)
        pwhash = await self._hasher.hash_async(secret)
        await self._store.create_account(name, AccountKind.CLIENT, pwhash, allowed, self._clock())
        self._changed(name, "client_created", by)
        return secret

    async def change_password(self, name: str, password: str, by: Actor = LOCAL_OPERATOR) -> int:
        """Set a new password and end every session; returns how many ended."""
        name = await self._existing(name)
        pwhash = await self._hasher.hash_async(validate_secret(password))
        ended = await self._store.change_password(name, pwhash)
        self._changed(name, "password_changed", by, ended)
        return ended

    async def disable(self, name: str, by: Actor = LOCAL_OPERATOR) -> int:
        """Disable an account and end every session; returns how many ended."""
        name = await self._existing(name)
        ended = await self._store.disable_account(name)
        self._changed(name, "disabled", by, ended)
        return ended

    async def enable(self, name: str, by: Actor = LOCAL_OPERATOR) -> None:
        """Enable a disabled account."""
        name = await self._existing(name)
        await self._store.enable_account(name)
        self._changed(name, "enabled", by)

    async def set_scopes(
        self, name: str, scopes: Sequence[str], by: Actor = LOCAL_OPERATOR
    ) -> None:
        """Replace the scopes an account may be granted; a session's next Refresh gets
        only the scopes it was granted that the account still has."""
        allowed = validate_scopes(scopes)
        name = await self._existing(name)
        await self._store.set_scopes(name, allowed)
        self._changed(name, "scopes_set", by)

    async def get(self, name: str) -> Account:
        """The account (its password hash stays in the domain: never put it on the wire).

        Raises:
            InvalidInput, NotFound.
        """
        account = await self._store.get_account(await self._existing(name))
        if account is None:
            raise NotFound(f"no account {name!r}")
        return account

    async def set_audiences(
        self, name: str, audiences: Sequence[str], by: Actor = LOCAL_OPERATOR
    ) -> None:
        """Replace the audiences an account may have tokens for (empty: the service-wide
        list). A session whose audience is no longer allowed ends at its next Refresh.

        Raises:
            InvalidInput: bad name or audiences.
            NotFound: no such account.
        """
        allowed = validate_audiences(audiences)
        name = await self._existing(name)
        await self._store.set_audiences(name, allowed)
        self._changed(name, "audiences_set", by)

    async def list(self) -> list[Account]:
        """Every account, sorted by name."""
        return await self._store.list_accounts()

    async def list_page(self, page_size: int = 0, page_token: str = "") -> Listing[Account]:
        """One page of accounts in name order.

        Raises:
            InvalidInput: a negative page size or a page token not from this listing.
        """
        limit, after = page_size_of(page_size), decode_page_token("accounts", page_token)
        page = await self._store.list_accounts_page(after, limit)
        return Listing(page.items, encode_page_token("accounts", page.next_after))

    async def list_sessions(
        self, name: str, page_size: int = 0, page_token: str = ""
    ) -> Listing[SessionInfo]:
        """One page of the account's live sessions in session-id order.

        Raises:
            InvalidInput, NotFound: no such account.
        """
        limit = page_size_of(page_size)
        name = await self._existing(name)
        listing = "sessions:" + name
        after = decode_page_token(listing, page_token)
        await self.get(name)
        page = await self._store.list_sessions_page(name, after, limit)
        return Listing(page.items, encode_page_token(listing, page.next_after))

    async def end_session(self, name: str, session_id: str, by: Actor = LOCAL_OPERATOR) -> None:
        """End one session of an account: its refresh token and every access token.

        Raises:
            InvalidInput, NotFound: no such session (ended already, or never existed).
        """
        session_id = validate_session_id(session_id)
        name = await self._existing(name)
        if not await self._store.revoke_session(name, session_id):
            raise NotFound(f"no live session {session_id!r} of {name!r}")
        self._events.emit(events.Revoked(name, by.source, session_id, "session", actor_name(by)))

    async def end_all_sessions(self, name: str, by: Actor = LOCAL_OPERATOR) -> int:
        """End every session of an account ("log out everywhere"); returns how many.

        Raises:
            InvalidInput, NotFound: no such account.
        """
        name = (await self.get(name)).name
        ended = await self._store.revoke_user(name)
        self._events.emit(events.Revoked(name, by.source, "", "user", actor_name(by)))
        return ended
