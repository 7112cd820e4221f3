"""Value objects: a token pair as authsvc hands it out, and the credentials to log in with."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Tokens:
    """An access/refresh token pair with its remaining lifetimes.

    Lifetimes are relative ("valid for N more seconds"), exactly as authsvc sends
    `expires_in`, so no wall clock is needed to interpret them. To start from what
    `authsvc login` printed (camel-case JSON, 64-bit numbers as strings), see the file store
    example in clients/README.md.

    Attributes:
        access_token: The access token (a JWT).
        refresh_token: The opaque refresh token that goes with it.
        expires_in: Seconds the access token stays valid, counted from when this value was made.
        refresh_expires_in: Seconds the refresh token stays valid, if known.
        lifetime: The access token's whole lifetime as issued; defaults to `expires_in`.
            The refresh margin is computed from it, so a token restored from a file halfway
            through its life is treated like the original.
        scopes: Scopes granted.
        session_id: The authsvc session the pair belongs to.
    """

    access_token: str = dataclasses.field(repr=False)
    refresh_token: str = dataclasses.field(repr=False)
    expires_in: float
    refresh_expires_in: float | None = None
    lifetime: float | None = None
    scopes: tuple[str, ...] = ()
    session_id: str = ""

    @property
    def full_lifetime(self) -> float:
        """The access token's lifetime as issued, in seconds."""
        return self.lifetime if self.lifetime is not None else self.expires_in


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What Login needs: a user's name and password, or a service account's id and secret.

    Use the named constructors; `repr` never shows the secret.
    """

    principal: str
    secret: str = dataclasses.field(repr=False)

    @classmethod
    def service_account(cls, client_id: str, client_secret: str) -> Credentials:
        """Credentials of a service account (client id and generated secret)."""
        return cls(client_id, client_secret)

    @classmethod
    def password(cls, username: str, password: str) -> Credentials:
        """Credentials of a user (username and password)."""
        return cls(username, password)
