"""Client library for authsvc: token managers, channel interceptors, server interceptors.

* `TokenManager` / `AsyncTokenManager` keep a service's or a user's tokens fresh, from
  `Credentials`, given `Tokens` or a `FileTokenStore` shared by several processes.
* `secure_channel` / `insecure_channel` (and the `aio_` twins) make channels whose every call
  carries `authorization: Bearer <token>`.
* `ServerAuthInterceptor` / `AsyncServerAuthInterceptor` protect a resource service; its
  handlers read the caller's claims with `current_claims()`.

clients/README.md has runnable examples (the tests run them against a real authsvc) and a
reference of every name in `__all__`.
"""

from authsvc_client.aio_interceptors import AsyncAuthInterceptor, AsyncTokenSource
from authsvc_client.aio_manager import AsyncTokenManager
from authsvc_client.aio_server_interceptor import AsyncServerAuthInterceptor
from authsvc_client.channels import (
    aio_insecure_channel,
    aio_secure_channel,
    insecure_channel,
    is_loopback_target,
    require_transport_security,
    secure_channel,
)
from authsvc_client.context import claims_or_none, current_claims
from authsvc_client.errors import (
    AuthClientError,
    AuthServiceError,
    AuthServiceUnavailable,
    CredentialsRejected,
    InsecureTransportError,
    InsufficientScope,
    InvalidToken,
    LoginThrottled,
    ReauthenticationRequired,
    RefreshTokenRejected,
    TokenStoreError,
    TokenStoreUnavailable,
    TokenUnavailable,
    TokenVerificationError,
    VerifierUnavailable,
)
from authsvc_client.guard import AUTHENTICATED, PUBLIC, MethodPolicy
from authsvc_client.interceptors import AuthInterceptor, TokenSource, TokenUnavailableError
from authsvc_client.jwks import AsyncKeySource, KeyCache, KeySource
from authsvc_client.manager import TokenManager
from authsvc_client.policy import CallRetry, RefreshPolicy
from authsvc_client.replay import Replayable
from authsvc_client.rpc import AsyncAuthsvcClient, AuthsvcClient
from authsvc_client.server_interceptor import ServerAuthInterceptor
from authsvc_client.session import TokenState
from authsvc_client.store import FileTokenStore
from authsvc_client.tokens import Credentials, Tokens
from authsvc_client.transport import (
    AsyncAuthTransport,
    AuthTransport,
    LockedTokenStore,
    TokenStore,
)
from authsvc_client.verify import AccessClaims, AccessTokenVerifier

__all__ = [
    "AUTHENTICATED",
    "PUBLIC",
    "AccessClaims",
    "AccessTokenVerifier",
    "AsyncAuthInterceptor",
    "AsyncAuthTransport",
    "AsyncAuthsvcClient",
    "AsyncKeySource",
    "AsyncServerAuthInterceptor",
    "AsyncTokenManager",
    "AsyncTokenSource",
    "AuthClientError",
    "AuthInterceptor",
    "AuthServiceError",
    "AuthServiceUnavailable",
    "AuthTransport",
    "AuthsvcClient",
    "CallRetry",
    "Credentials",
    "CredentialsRejected",
    "FileTokenStore",
    "InsecureTransportError",
    "InsufficientScope",
    "InvalidToken",
    "KeyCache",
    "KeySource",
    "LockedTokenStore",
    "LoginThrottled",
    "MethodPolicy",
    "ReauthenticationRequired",
    "RefreshPolicy",
    "RefreshTokenRejected",
    "Replayable",
    "ServerAuthInterceptor",
    "TokenManager",
    "TokenSource",
    "TokenState",
    "TokenStore",
    "TokenStoreError",
    "TokenStoreUnavailable",
    "TokenUnavailable",
    "TokenUnavailableError",
    "TokenVerificationError",
    "Tokens",
    "VerifierUnavailable",
    "aio_insecure_channel",
    "aio_secure_channel",
    "claims_or_none",
    "current_claims",
    "insecure_channel",
    "is_loopback_target",
    "require_transport_security",
    "secure_channel",
]
