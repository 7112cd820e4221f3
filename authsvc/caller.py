"""Who is calling: the transport facts the domain needs, without any gRPC type.

The gRPC layer builds a `Caller` from the call's peer, its mTLS identity and its
`authorization` metadata; the domain uses it to rate-limit by source, to decide whether
the caller is an administrator, and to name the actor in audit events.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Caller:
    """The caller of one RPC."""

    #: gRPC's peer string, e.g. `ipv4:127.0.0.1:40312`, `ipv6:[::1]:40312`, `unix:/path`.
    peer: str = ""
    #: Identities of a verified mTLS client certificate (URI/DNS SANs, else the CN).
    tls_identities: tuple[str, ...] = ()
    #: The access token of `authorization: Bearer <token>` metadata, if any.
    bearer_token: str = dataclasses.field(default="", repr=False)

    @property
    def peer_host(self) -> str:
        """The peer's address without the port (`unix` for a Unix socket)."""
        kind, _, rest = self.peer.partition(":")
        if kind == "ipv4":
            return rest.rsplit(":", 1)[0]
        if kind == "ipv6":
            return rest.rsplit(":", 1)[0].strip("[]")
        return kind or "unknown"

    @property
    def source(self) -> str:
        """The identity budgets and audit events are kept under: the mTLS identity when
        there is one (stable across addresses), else the peer address."""
        if self.tls_identities:
            return "mtls:" + self.tls_identities[0]
        return self.peer_host


#: A caller about whom nothing is known (in-process calls, tests).
UNKNOWN_CALLER = Caller()

#: The caller of in-process operations (the admin CLI on the Redis host).
LOCAL_OPERATOR = Caller(peer="local")
