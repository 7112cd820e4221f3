"""One-line channels that carry bearer tokens, refusing to send them in clear text.

Like grpc-go's `RequireTransportSecurity`, an insecure channel is accepted only to a loopback
address or a Unix socket, unless the caller explicitly allows it (e.g. inside a service mesh
that encrypts for you).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from authsvc_client.aio_interceptors import AsyncAuthInterceptor, AsyncTokenSource
from authsvc_client.errors import InsecureTransportError
from authsvc_client.interceptors import AuthInterceptor, TokenSource

_Options = Sequence[tuple[str, Any]]
_LOCAL_SCHEMES = ("unix:", "unix-abstract:")
_NAME_SCHEMES = ("dns:", "ipv4:", "ipv6:")


def is_loopback_target(target: str) -> bool:
    """Whether a gRPC target names this host only (loopback address, localhost, Unix socket)."""
    if target.startswith(_LOCAL_SCHEMES):
        return True
    for scheme in _NAME_SCHEMES:
        if target.startswith(scheme):
            target = target[len(scheme) :]
            if target.startswith("//"):  # dns://authority/host:port
                target = target[2:].partition("/")[2]
            break
    # ipv4:/ipv6: targets may list several addresses: every one must be loopback.
    return all(_is_loopback_host(_host(part)) for part in target.split(","))


def _is_loopback_host(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host(hostport: str) -> str:
    if hostport.startswith("["):
        return hostport[1:].partition("]")[0]
    if hostport.count(":") > 1:  # a bare IPv6 address
        return hostport
    return hostport.partition(":")[0]


def require_transport_security(target: str, *, allow_insecure: bool = False) -> None:
    """Raise `InsecureTransportError` unless clear text to `target` stays on this host.

    Args:
        target: The gRPC target of an insecure channel.
        allow_insecure: Send tokens in clear text anyway.
    """
    if not allow_insecure and not is_loopback_target(target):
        raise InsecureTransportError(
            f"refusing to send bearer tokens over an insecure channel to {target!r}; use "
            "secure_channel(), or pass allow_insecure=True if the network is trusted"
        )


def secure_channel(
    target: str,
    tokens: TokenSource,
    credentials: grpc.ChannelCredentials | None = None,
    *,
    options: _Options | None = None,
) -> grpc.Channel:
    """A TLS channel whose calls carry bearer tokens from `tokens` (a `TokenManager`).

    Args:
        target: Where to connect.
        tokens: The token manager.
        credentials: TLS settings; default: system roots.
        options: Channel options.
    """
    channel = grpc.secure_channel(
        target, credentials or grpc.ssl_channel_credentials(), options=options
    )
    return grpc.intercept_channel(channel, AuthInterceptor(tokens))


def insecure_channel(
    target: str,
    tokens: TokenSource,
    *,
    allow_insecure: bool = False,
    options: _Options | None = None,
) -> grpc.Channel:
    """A clear-text channel with bearer tokens; only to loopback unless `allow_insecure`.

    Raises:
        InsecureTransportError: `target` is not local and `allow_insecure` is false.
    """
    require_transport_security(target, allow_insecure=allow_insecure)
    channel = grpc.insecure_channel(target, options=options)
    return grpc.intercept_channel(channel, AuthInterceptor(tokens))


def aio_secure_channel(
    target: str,
    tokens: AsyncTokenSource,
    credentials: grpc.ChannelCredentials | None = None,
    *,
    options: _Options | None = None,
) -> grpc.aio.Channel:
    """A `grpc.aio` TLS channel with bearer tokens from `tokens` (an `AsyncTokenManager`)."""
    return grpc.aio.secure_channel(
        target,
        credentials or grpc.ssl_channel_credentials(),
        options=options,
        interceptors=AsyncAuthInterceptor(tokens).interceptors(),
    )


def aio_insecure_channel(
    target: str,
    tokens: AsyncTokenSource,
    *,
    allow_insecure: bool = False,
    options: _Options | None = None,
) -> grpc.aio.Channel:
    """A `grpc.aio` clear-text channel with bearer tokens; see `insecure_channel`."""
    require_transport_security(target, allow_insecure=allow_insecure)
    return grpc.aio.insecure_channel(
        target, options=options, interceptors=AsyncAuthInterceptor(tokens).interceptors()
    )
