"""The gRPC layer: translates messages to domain calls and results back. Only this module
(and the server wiring) imports the generated `*_pb2` code."""

from __future__ import annotations

from collections.abc import Callable

from authsvc_api.v1 import auth_pb2, auth_pb2_grpc
from authsvc_client.cache import LruCache

from authsvc.caller import Caller
from authsvc.errors import InvalidInput
from authsvc.rpc_status import Context, maps_errors
from authsvc.service import AuthService, IssuedTokens, RevokeWhat
from authsvc.tokens import AccessClaims, Invalid

_REASONS = {
    Invalid.MALFORMED: auth_pb2.INVALID_REASON_MALFORMED,
    Invalid.BAD_SIGNATURE: auth_pb2.INVALID_REASON_BAD_SIGNATURE,
    Invalid.EXPIRED: auth_pb2.INVALID_REASON_EXPIRED,
    Invalid.NOT_YET_VALID: auth_pb2.INVALID_REASON_NOT_YET_VALID,
    Invalid.REVOKED: auth_pb2.INVALID_REASON_REVOKED,
    Invalid.WRONG_TYPE: auth_pb2.INVALID_REASON_WRONG_TYPE,
    Invalid.WRONG_AUDIENCE: auth_pb2.INVALID_REASON_WRONG_AUDIENCE,
    Invalid.WRONG_ISSUER: auth_pb2.INVALID_REASON_WRONG_ISSUER,
    Invalid.INSUFFICIENT_SCOPE: auth_pb2.INVALID_REASON_INSUFFICIENT_SCOPE,
    Invalid.UNKNOWN_KEY: auth_pb2.INVALID_REASON_UNKNOWN_KEY,
}
# Invalid answers carry no per-token data, so they are built once.
_INVALID_ANSWERS = {
    reason: auth_pb2.ValidateResponse(valid=False, reason=code) for reason, code in _REASONS.items()
}
_REVOKE_SCOPES = {
    auth_pb2.REVOKE_SCOPE_UNSPECIFIED: RevokeWhat.TOKEN,
    auth_pb2.REVOKE_SCOPE_TOKEN: RevokeWhat.TOKEN,
    auth_pb2.REVOKE_SCOPE_SESSION: RevokeWhat.SESSION,
    auth_pb2.REVOKE_SCOPE_USER: RevokeWhat.USER,
}


_ANSWER_CACHE_SIZE = 65536
_BEARER = "bearer "


def caller_of(context: Context) -> Caller:
    """The caller of this RPC: peer address, verified mTLS identity, bearer token."""
    auth = context.auth_context()
    identities: tuple[str, ...] = ()
    if auth.get("transport_security_type") == [b"ssl"] and context.peer_identities():
        sans = auth.get("x509_subject_alternative_name") or []
        names = sans or auth.get("x509_common_name") or []
        identities = tuple(n.decode("utf-8", "replace") for n in names)
    bearer = ""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            if value[: len(_BEARER)].lower() == _BEARER:
                bearer = value[len(_BEARER) :].strip()
            break
    return Caller(peer=context.peer() or "", tls_identities=identities, bearer_token=bearer)


def _valid_answer(c: AccessClaims) -> auth_pb2.ValidateResponse:
    return auth_pb2.ValidateResponse(
        valid=True,
        claims=auth_pb2.Claims(
            subject=c.subject,
            session_id=c.session_id,
            scopes=c.scopes,
            audience=c.audience,
            issued_at=c.issued_at,
            expires_at=c.expires_at,
            token_id=c.token_id,
            issuer=c.issuer,
            client_id=c.client_id,
        ),
    )


def _pair_fields(tokens: IssuedTokens) -> dict[str, object]:
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": "Bearer",
        "expires_in": tokens.expires_in,
        "refresh_expires_in": tokens.refresh_expires_in,
        "scopes": list(tokens.scopes),
        "session_id": tokens.session_id,
    }


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """authsvc.v1.AuthService over the domain `AuthService`."""

    def __init__(
        self, service: AuthService, on_store_unavailable: Callable[[], None] | None = None
    ) -> None:
        self._service = service
        self.on_store_unavailable = on_store_unavailable
        self._jwks = auth_pb2.GetJwksResponse()
        self._jwks_json = ""
        self._valid_answers: LruCache[str, auth_pb2.ValidateResponse] = LruCache(_ANSWER_CACHE_SIZE)

    @maps_errors
    async def Login(
        self, request: auth_pb2.LoginRequest, context: Context
    ) -> auth_pb2.LoginResponse:
        tokens = await self._service.login(
            request.username,
            request.password,
            request.audience,
            list(request.scopes),
            caller_of(context),
        )
        return auth_pb2.LoginResponse(**_pair_fields(tokens))  # type: ignore[arg-type]

    @maps_errors
    async def Refresh(
        self, request: auth_pb2.RefreshRequest, context: Context
    ) -> auth_pb2.RefreshResponse:
        tokens = await self._service.refresh(
            request.refresh_token, list(request.scopes), caller_of(context)
        )
        return auth_pb2.RefreshResponse(**_pair_fields(tokens))  # type: ignore[arg-type]

    @maps_errors
    async def Validate(
        self, request: auth_pb2.ValidateRequest, context: Context
    ) -> auth_pb2.ValidateResponse:
        result = await self._service.validate(
            request.access_token, request.audience, request.required_scopes
        )
        if not result.valid or result.claims is None:
            assert result.reason is not None
            return _INVALID_ANSWERS[result.reason]
        # A valid token's answer never changes, so it is built once per token (bounded).
        answer = self._valid_answers.get(request.access_token)
        if answer is None:
            answer = _valid_answer(result.claims)
            self._valid_answers.put(request.access_token, answer)
        return answer

    @maps_errors
    async def Revoke(
        self, request: auth_pb2.RevokeRequest, context: Context
    ) -> auth_pb2.RevokeResponse:
        what = _REVOKE_SCOPES.get(request.scope)
        if what is None:
            raise InvalidInput("unknown revoke scope")
        await self._service.revoke(request.token, what, caller_of(context))
        return auth_pb2.RevokeResponse()

    @maps_errors
    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: Context
    ) -> auth_pb2.GetJwksResponse:
        jwks = await self._service.jwks()
        if jwks != self._jwks_json:  # the keys changed (rotation): build the answer once
            self._jwks, self._jwks_json = auth_pb2.GetJwksResponse(jwks_json=jwks), jwks
        return self._jwks
