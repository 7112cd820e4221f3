"""The gRPC layer of the admin API: `authsvc.v1.AdminService` over `AccountAdmin` and the
key provider. Every method first asks the one administrator rule
(`AuthService.admins.require_admin`); the domain does the rest."""

from __future__ import annotations

from authsvc_api.v1 import admin_pb2, admin_pb2_grpc

from authsvc.accounts import AccountAdmin
from authsvc.admin_auth import Admin
from authsvc.rpc import caller_of
from authsvc.rpc_status import Context, maps_errors
from authsvc.service import AuthService
from authsvc.store import Account, AccountKind, SessionInfo

_KINDS = {
    AccountKind.USER: admin_pb2.ACCOUNT_KIND_USER,
    AccountKind.CLIENT: admin_pb2.ACCOUNT_KIND_SERVICE,
}


def _account(account: Account) -> admin_pb2.Account:
    return admin_pb2.Account(
        name=account.name,
        kind=_KINDS[account.kind],
        disabled=account.disabled,
        scopes=account.scopes,
        created=account.created,
    )


def _session(session: SessionInfo) -> admin_pb2.Session:
    return admin_pb2.Session(
        session_id=session.session_id,
        created=session.created,
        last_refreshed=session.refreshed,
        client_id=session.client_id,
        scopes=session.scopes,
        audience=session.audience,
        refresh_expires_at=session.refresh_expires_at,
        absolute_expires_at=session.absolute_expires_at,
    )


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """authsvc.v1.AdminService: administrators only."""

    def __init__(self, service: AuthService, accounts: AccountAdmin) -> None:
        self._service = service
        self._accounts = accounts

    async def _admin(self, context: Context) -> Admin:
        """The administrator making this call (raises for everyone else)."""
        return await self._service.admins.require_admin(caller_of(context))

    async def _created(self, name: str) -> admin_pb2.Account:
        return _account(await self._accounts.get(name))

    @maps_errors
    async def CreateUser(
        self, request: admin_pb2.CreateUserRequest, context: Context
    ) -> admin_pb2.CreateUserResponse:
        admin = await self._admin(context)
        await self._accounts.add_user(
            request.username, request.password, list(request.scopes), by=admin
        )
        return admin_pb2.CreateUserResponse(account=await self._created(request.username))

    @maps_errors
    async def CreateServiceAccount(
        self, request: admin_pb2.CreateServiceAccountRequest, context: Context
    ) -> admin_pb2.CreateServiceAccountResponse:
        admin = await self._admin(context)
        secret = await self._accounts.add_client(request.name, list(request.scopes), by=admin)
        return admin_pb2.CreateServiceAccountResponse(
            account=await self._created(request.name),
            client_id=request.name,
            client_secret=secret,
        )

    @maps_errors
    async def DisableAccount(
        self, request: admin_pb2.DisableAccountRequest, context: Context
    ) -> admin_pb2.DisableAccountResponse:
        admin = await self._admin(context)
        ended = await self._accounts.disable(request.name, by=admin)
        return admin_pb2.DisableAccountResponse(sessions_ended=ended)

    @maps_errors
    async def EnableAccount(
        self, request: admin_pb2.EnableAccountRequest, context: Context
    ) -> admin_pb2.EnableAccountResponse:
        admin = await self._admin(context)
        await self._accounts.enable(request.name, by=admin)
        return admin_pb2.EnableAccountResponse()

    @maps_errors
    async def SetScopes(
        self, request: admin_pb2.SetScopesRequest, context: Context
    ) -> admin_pb2.SetScopesResponse:
        admin = await self._admin(context)
        await self._accounts.set_scopes(request.name, list(request.scopes), by=admin)
        return admin_pb2.SetScopesResponse()

    @maps_errors
    async def SetAudiences(
        self, request: admin_pb2.SetAudiencesRequest, context: Context
    ) -> admin_pb2.SetAudiencesResponse:
        admin = await self._admin(context)
        await self._accounts.set_audiences(request.name, list(request.audiences), by=admin)
        return admin_pb2.SetAudiencesResponse()

    @maps_errors
    async def ResetPassword(
        self, request: admin_pb2.ResetPasswordRequest, context: Context
    ) -> admin_pb2.ResetPasswordResponse:
        admin = await self._admin(context)
        ended = await self._accounts.change_password(request.name, request.new_password, by=admin)
        return admin_pb2.ResetPasswordResponse(sessions_ended=ended)

    @maps_errors
    async def ListAccounts(
        self, request: admin_pb2.ListAccountsRequest, context: Context
    ) -> admin_pb2.ListAccountsResponse:
        await self._admin(context)
        page = await self._accounts.list_page(request.page_size, request.page_token)
        return admin_pb2.ListAccountsResponse(
            accounts=[_account(a) for a in page.items], next_page_token=page.next_page_token
        )

    @maps_errors
    async def ListSessions(
        self, request: admin_pb2.ListSessionsRequest, context: Context
    ) -> admin_pb2.ListSessionsResponse:
        await self._admin(context)
        page = await self._accounts.list_sessions(
            request.name, request.page_size, request.page_token
        )
        return admin_pb2.ListSessionsResponse(
            sessions=[_session(s) for s in page.items], next_page_token=page.next_page_token
        )

    @maps_errors
    async def EndSession(
        self, request: admin_pb2.EndSessionRequest, context: Context
    ) -> admin_pb2.EndSessionResponse:
        admin = await self._admin(context)
        await self._accounts.end_session(request.name, request.session_id, by=admin)
        return admin_pb2.EndSessionResponse()

    @maps_errors
    async def EndAllSessions(
        self, request: admin_pb2.EndAllSessionsRequest, context: Context
    ) -> admin_pb2.EndAllSessionsResponse:
        admin = await self._admin(context)
        ended = await self._accounts.end_all_sessions(request.name, by=admin)
        return admin_pb2.EndAllSessionsResponse(sessions_ended=ended)

    @maps_errors
    async def RotateSigningKeys(
        self, request: admin_pb2.RotateSigningKeysRequest, context: Context
    ) -> admin_pb2.RotateSigningKeysResponse:
        admin = await self._admin(context)
        key = await self._service.keys.rotate(admin.name, admin.source)
        return admin_pb2.RotateSigningKeysResponse(
            kid=key.kid, alg=key.alg, signs_from=key.signs_from
        )
