"""The `authsvc` command: serve, account administration, and client calls for the shell.

    authsvc serve [--SETTING VALUE ...]           (any AUTHSVC_* setting, e.g. --workers 2)
    authsvc user add NAME [--scopes a,b] [--password-stdin]
    authsvc user passwd NAME [--password-stdin]
    authsvc user disable NAME | enable NAME | scopes NAME --scopes a,b | list
    authsvc user audiences NAME --audiences a,b   (empty: the service-wide list)
    authsvc client add NAME [--scopes a,b]        (prints a generated secret once)
    authsvc keys rotate | list                    (the signing-key ring in Redis)
    authsvc login NAME [--password-stdin] [--audience A] [--scope S ...] [--ca F [--cert F --key F]]
    authsvc validate TOKEN [--audience A] [--scope S ...]
    authsvc refresh TOKEN
    authsvc revoke TOKEN [--what token|session|user] [--bearer-token-file F]

Admin commands reach the same Redis as the server from the same configuration (the
embedded default included), directly: they need no running server, and `keys rotate`
needs the same key-encryption key as the servers. TOKEN may be `-` to read it from stdin
(keeps it out of `ps`).
Ending a session or a user's sessions with an access token takes an administrator: pass an
admin access token with --bearer-token-file, or connect with an allow-listed certificate.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc
from google.protobuf import json_format

from authsvc import audit
from authsvc.accounts import AccountAdmin
from authsvc.caller import LOCAL_OPERATOR
from authsvc.config import Settings, add_flags, env_name, flag_values, load_settings
from authsvc.embedded_redis import EmbeddedRedis
from authsvc.errors import AuthsvcError
from authsvc.keyring import KeyRing
from authsvc.server import make_hasher, make_key_provider, make_store, run
from authsvc.service import validate_name
from authsvc.store import RedisStore

_REVOKE_SCOPES = {
    "token": auth_pb2.REVOKE_SCOPE_TOKEN,
    "session": auth_pb2.REVOKE_SCOPE_SESSION,
    "user": auth_pb2.REVOKE_SCOPE_USER,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="authsvc", description="gRPC authentication service")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the gRPC server",
        usage="authsvc serve [--SETTING VALUE ...]",
        description="Run the gRPC server. Each flag overrides its AUTHSVC_* variable.",
    )
    add_flags(serve)

    user = sub.add_parser("user", help="manage user accounts").add_subparsers(
        dest="action", required=True
    )
    add = user.add_parser("add", help="create a user (password from a prompt or stdin)")
    add.add_argument("name")
    add.add_argument("--scopes", default="", help="comma-separated allowed scopes")
    add.add_argument("--password-stdin", action="store_true")
    passwd = user.add_parser("passwd", help="set a new password; ends all sessions")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    for action, text in (("disable", "disable; ends all sessions"), ("enable", "enable again")):
        user.add_parser(action, help=text).add_argument("name")
    scopes = user.add_parser("scopes", help="set the allowed scopes of a user or client")
    scopes.add_argument("name")
    scopes.add_argument("--scopes", required=True, help="comma-separated")
    audiences = user.add_parser(
        "audiences", help="set the audiences a user or client may have tokens for"
    )
    audiences.add_argument("name")
    audiences.add_argument(
        "--audiences", required=True, help="comma-separated; empty: the service-wide list"
    )
    user.add_parser("list", help="list users and clients")

    client = sub.add_parser("client", help="manage service accounts").add_subparsers(
        dest="action", required=True
    )
    cadd = client.add_parser("add", help="create a service account; prints its secret once")
    cadd.add_argument("name")
    cadd.add_argument("--scopes", default="", help="comma-separated allowed scopes")

    keys = sub.add_parser("keys", help="the signing-key ring").add_subparsers(
        dest="action", required=True
    )
    keys.add_parser("rotate", help="add a new signing key (signs one JWKS cache period later)")
    keys.add_parser("list", help="list the ring's keys and what each does now")

    def target(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--target", default=None, help=f"server address (default: {env_name('listen')})"
        )
        parser.add_argument("--ca", default=None, help="PEM CA bundle: connect with TLS")
        parser.add_argument("--cert", default=None, help="PEM client certificate (mTLS)")
        parser.add_argument("--key", default=None, help="PEM client key (mTLS)")
        parser.add_argument(
            "--bearer-token-file",
            default=None,
            help="file holding an access token to send as `authorization: Bearer` "
            "(an administrator's, to end other sessions with an access token)",
        )

    login = sub.add_parser("login", help="log in; prints the token pair as JSON")
    login.add_argument("name")
    login.add_argument("--password-stdin", action="store_true")
    login.add_argument("--audience", default="")
    login.add_argument("--scope", action="append", default=[])
    target(login)
    validate = sub.add_parser("validate", help="validate an access token")
    validate.add_argument("token")
    validate.add_argument("--audience", default="")
    validate.add_argument("--scope", action="append", default=[])
    target(validate)
    refresh = sub.add_parser("refresh", help="exchange a refresh token for a new pair")
    refresh.add_argument("token")
    refresh.add_argument("--scope", action="append", default=[])
    target(refresh)
    revoke = sub.add_parser("revoke", help="revoke a token, its session or its user")
    revoke.add_argument("token")
    revoke.add_argument("--what", choices=sorted(_REVOKE_SCOPES), default="token")
    target(revoke)
    return p


def _read_secret(from_stdin: bool, confirm: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != first:
        raise AuthsvcError("passwords do not match")
    return first


def _token_arg(value: str) -> str:
    return sys.stdin.readline().strip() if value == "-" else value


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


async def _with_store(settings: Settings, action: Callable[[RedisStore], Awaitable[None]]) -> None:
    embedded = EmbeddedRedis(settings.data_dir) if settings.uses_embedded_redis else None
    url = embedded.start() if embedded else settings.redis_url
    store = make_store(settings, url)
    try:
        await store.index_legacy_names()  # so older accounts are found under any spelling
        await action(store)
    finally:
        await store.close()
        if embedded:
            embedded.stop()


def _admin(settings: Settings, args: argparse.Namespace) -> None:
    hasher = make_hasher(settings)
    name = args.name if getattr(args, "name", None) is not None else ""
    # Account changes made here are audited like the server's, in the same trail.
    audit.configure(settings.audit_log)
    trail = audit.AuditSink(os_user=audit.current_os_user())

    async def act(store: RedisStore) -> None:
        admin = AccountAdmin(store, hasher, sink=trail)
        if args.command == "client":
            secret = await admin.add_client(name, _csv(args.scopes))
            print(f"client {name} created; its secret (shown once, store it safely):")
            print(secret)
        elif args.action == "add":
            validate_name(name)  # before asking for a password
            password = _read_secret(args.password_stdin, confirm=True)
            await admin.add_user(name, password, _csv(args.scopes))
            print(f"user {validate_name(name)} created")
        elif args.action == "passwd":
            validate_name(name)
            password = _read_secret(args.password_stdin, confirm=True)
            n = await admin.change_password(name, password)
            print(f"password of {name} changed; {n} session(s) ended")
        elif args.action == "disable":
            n = await admin.disable(name)
            print(f"{name} disabled; {n} session(s) ended")
        elif args.action == "enable":
            await admin.enable(name)
            print(f"{name} enabled")
        elif args.action == "scopes":
            await admin.set_scopes(name, _csv(args.scopes))
            print(f"scopes of {name} set")
        elif args.action == "audiences":
            await admin.set_audiences(name, _csv(args.audiences))
            print(f"audiences of {name} set")
        elif args.action == "list":
            for acct in await admin.list():
                state = "disabled" if acct.disabled else "active"
                audiences = ",".join(acct.audiences) or "-"
                print(
                    f"{acct.name}\t{acct.kind.value}\t{state}\t{' '.join(acct.scopes)}"
                    f"\taudiences={audiences}"
                )

    try:
        asyncio.run(_with_store(settings, act))
    finally:
        hasher.close()


def _keys(settings: Settings, args: argparse.Namespace) -> None:
    async def act(store: RedisStore) -> None:
        keys = make_key_provider(settings, store)
        if args.action == "rotate":
            key = await keys.rotate(LOCAL_OPERATOR.source, LOCAL_OPERATOR.source)
            print(f"key {key.kid} ({key.alg}) published; it signs from {_when(key.signs_from)}")
            return
        if not isinstance(keys, KeyRing):
            raise AuthsvcError("signing keys come from AUTHSVC_SIGNING_KEY_FILE, not the ring")
        schedule = await keys.schedule()
        if schedule is None:
            print("no keys yet: the first server start creates one")
            return
        s = schedule.signing
        print(f"{s.kid}\t{s.alg}\tsigning\tsince {_when(s.activates_ms // 1000)}")
        for k in schedule.upcoming:
            print(f"{k.kid}\t{k.alg}\tpublished\tsigns from {_when(k.activates_ms // 1000)}")
        for k, leaves_ms in schedule.retired:
            print(f"{k.kid}\t{k.alg}\tretired\tleaves the JWKS {_when(leaves_ms // 1000)}")

    asyncio.run(_with_store(settings, act))


def _when(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


def _channel(target: str, args: argparse.Namespace) -> grpc.Channel:
    """Plaintext, or TLS when --ca is given (with a client certificate for mTLS)."""
    if not args.ca:
        if args.cert or args.key:
            raise AuthsvcError("--cert/--key need --ca (TLS)")
        return grpc.insecure_channel(target)

    def read(path: str | None) -> bytes | None:
        try:
            return Path(path).read_bytes() if path else None
        except OSError as exc:
            raise AuthsvcError(f"cannot read {path}: {exc.strerror}") from None

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.key),
        certificate_chain=read(args.cert),
    )
    return grpc.secure_channel(target, credentials)


def _metadata(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """`authorization: Bearer <token>` from --bearer-token-file, if given."""
    if not args.bearer_token_file:
        return ()
    try:
        token = Path(args.bearer_token_file).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthsvcError(f"cannot read {args.bearer_token_file}: {exc}") from None
    if not token:
        raise AuthsvcError(f"{args.bearer_token_file} holds no token")
    return (("authorization", "Bearer " + token),)


def _call(settings: Settings, args: argparse.Namespace) -> None:
    target = args.target or settings.listen
    metadata = _metadata(args)
    with _channel(target, args) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        response: Any
        if args.command == "login":
            password = _read_secret(args.password_stdin, confirm=False)
            response = stub.Login(
                auth_pb2.LoginRequest(
                    username=args.name, password=password, audience=args.audience,
                    scopes=args.scope,
                ),
                timeout=30, metadata=metadata,
            )  # fmt: skip
        elif args.command == "validate":
            response = stub.Validate(
                auth_pb2.ValidateRequest(
                    access_token=_token_arg(args.token), audience=args.audience,
                    required_scopes=args.scope,
                ),
                timeout=10, metadata=metadata,
            )  # fmt: skip
        elif args.command == "refresh":
            response = stub.Refresh(
                auth_pb2.RefreshRequest(refresh_token=_token_arg(args.token), scopes=args.scope),
                timeout=10,
                metadata=metadata,
            )
        else:
            response = stub.Revoke(
                auth_pb2.RevokeRequest(
                    token=_token_arg(args.token), scope=_REVOKE_SCOPES[args.what]
                ),
                timeout=10,
                metadata=metadata,
            )
        print(json.dumps(json_format.MessageToDict(response), indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `authsvc` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(flags=flag_values(args) if args.command == "serve" else None)
        if args.command == "serve":
            run(settings)
        elif args.command in ("user", "client"):
            _admin(settings, args)
        elif args.command == "keys":
            _keys(settings, args)
        else:
            _call(settings, args)
    except AuthsvcError as exc:
        print(f"authsvc: error: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"authsvc: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
