"""What a resource server demands of each method's caller, and the checks that do not do I/O.

The server interceptors (`server_interceptor`, `aio_server_interceptor`) add the two steps
that may need authsvc: fetching keys and, optionally, the Validate RPC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

from jwt import PyJWK

from authsvc_client.bearer import MetadataPairs, bearer_token
from authsvc_client.errors import InvalidToken
from authsvc_client.verify import AccessClaims, AccessTokenVerifier, require_scopes


@dataclasses.dataclass(frozen=True)
class MethodPolicy:
    """Requirements for calling a method.

    Attributes:
        scopes: Scopes the token must all carry.
        audience: The `aud` required; None means the interceptor's audience.
        public: No token is needed at all (e.g. health checks).
    """

    scopes: frozenset[str] = frozenset()
    audience: str | None = None
    public: bool = False

    @classmethod
    def require(cls, *scopes: str, audience: str | None = None) -> MethodPolicy:
        """A policy requiring `scopes` (and optionally a specific audience)."""
        return cls(frozenset(scopes), audience)


PUBLIC = MethodPolicy(public=True)
"""Policy of a method that needs no token."""

AUTHENTICATED = MethodPolicy()
"""Policy of a method that needs a valid token and no particular scope."""


class Guard:
    """Per-method policies plus local token verification.

    Args:
        verifier: Checks signatures and claims.
        audience: The audience required unless a method's policy names another.
        policies: By full method name ("/pkg.Service/Method") or per service
            ("/pkg.Service/*").
        default_policy: For methods not listed: by default a valid token, no scopes.
    """

    def __init__(
        self,
        verifier: AccessTokenVerifier,
        *,
        audience: str,
        policies: Mapping[str, MethodPolicy] | None = None,
        default_policy: MethodPolicy = AUTHENTICATED,
    ) -> None:
        self.verifier = verifier
        self._audience = audience
        self._policies = dict(policies or {})
        self._default = default_policy

    def policy(self, method: str) -> MethodPolicy:
        """The policy of a full method name."""
        found = self._policies.get(method)
        if found is None:
            service = method.rpartition("/")[0]
            found = self._policies.get(f"{service}/*", self._default)
        return found

    def audience(self, policy: MethodPolicy) -> str:
        """The audience `policy` requires."""
        return policy.audience if policy.audience is not None else self._audience

    def token(self, metadata: MetadataPairs | None) -> str:
        """The bearer token of a call's metadata.

        Raises:
            InvalidToken: There is none, or more than one (reason MISSING).
        """
        token = bearer_token(metadata)
        if token is None:
            raise InvalidToken("missing bearer token", "MISSING")
        return token

    def kid(self, token: str) -> str:
        """The key id of `token`, after checking its header."""
        return self.verifier.kid(token)

    def check(self, token: str, key: PyJWK, policy: MethodPolicy) -> AccessClaims:
        """Verify `token` with `key` and enforce `policy`; return its claims.

        Raises:
            InvalidToken: The token is not valid for this method.
            InsufficientScope: It lacks a required scope.
        """
        claims = self.verifier.verify(token, key, self.audience(policy))
        require_scopes(claims, policy.scopes)
        return claims

    @staticmethod
    def required_scopes(policy: MethodPolicy) -> Collection[str]:
        """Scopes to pass to Validate."""
        return sorted(policy.scopes)
