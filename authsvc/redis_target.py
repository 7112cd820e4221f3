"""What `AUTHSVC_REDIS_URL` names: one Redis, a Redis Cluster, or a master behind Sentinel.

    redis://[[user]:password@]host[:port][/db]         one Redis (as redis-py reads it)
    rediss://...                                        the same over TLS
    unix://[[user]:password@]/path/to/socket[?db=N]     one Redis on a unix socket
    redis+cluster://[[user]:password@]host:port[,host:port...]
    rediss+cluster://...                                Cluster: seed nodes, over TLS
    redis+sentinel://[[user]:password@]host:port[,host:port...]/MASTER_NAME
    rediss+sentinel://...                               Sentinel, over TLS

Credentials are those of the data nodes (sentinels are asked without credentials).
`ssl_ca_certs=PATH` may follow `?` in the TLS forms. Parsing is pure: nothing connects
here, and no error message repeats the URL (it may hold a password).
"""

from __future__ import annotations

import dataclasses
import enum
from urllib.parse import parse_qs, unquote

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
_SINGLE_SCHEMES = ("redis://", "rediss://", "unix://")
_MULTI = {
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
FORMS = (
    "redis://, rediss://, unix://, redis+cluster://HOST:PORT[,HOST:PORT...], "
    "rediss+cluster://..., redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER or "
    "rediss+sentinel://..."
)


class Topology(enum.Enum):
    """How the Redis deployment is laid out."""

    SINGLE = "single"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


@dataclasses.dataclass(frozen=True)
class RedisTarget:
    """A parsed `AUTHSVC_REDIS_URL`.

    Attributes:
        topology: one Redis, a Cluster or Sentinel.
        url: for one Redis, the URL as redis-py reads it; else empty.
        nodes: Cluster seed nodes or sentinels, as (host, port).
        master_name: the Sentinel master's name.
        tls: connect with TLS.
        username, password: credentials of the data nodes (None: none).
        ssl_ca_certs: CA bundle for TLS (None: the system's).
    """

    topology: Topology
    url: str = ""
    nodes: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    tls: bool = False
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    ssl_ca_certs: str | None = None

    @property
    def distributed(self) -> bool:
        """True for Cluster and Sentinel: a deployment built with replicas."""
        return self.topology is not Topology.SINGLE


def parse_redis_url(raw: str) -> RedisTarget:
    """Parse one of the accepted forms.

    Raises:
        ValueError: not one of the forms; the message never contains the URL.
    """
    if raw.startswith(_SINGLE_SCHEMES):
        if raw.startswith("unix://"):
            if "/" not in raw[len("unix://") :].rpartition("@")[2]:
                raise ValueError("unix:// needs a socket path, e.g. unix:///run/redis.sock")
        elif not raw.split("://", 1)[1].rpartition("@")[2].split("/")[0].split("?")[0]:
            raise ValueError("redis:// needs a host")
        return RedisTarget(Topology.SINGLE, url=raw, tls=raw.startswith("rediss://"))
    scheme, sep, rest = raw.partition("://")
    if not sep or scheme not in _MULTI:
        raise ValueError(f"must be one of {FORMS}")
    kind, tls = _MULTI[scheme]
    rest, _, query = rest.partition("?")
    userinfo, at, hosts_and_path = rest.rpartition("@")
    if not at:
        hosts_and_path = rest
    hosts, slash, path = hosts_and_path.partition("/")
    topology = Topology.CLUSTER if kind == "cluster" else Topology.SENTINEL
    default_port = DEFAULT_PORT if topology is Topology.CLUSTER else DEFAULT_SENTINEL_PORT
    nodes = tuple(_host_port(part, default_port) for part in hosts.split(","))
    master = unquote(path.strip("/"))
    if topology is Topology.SENTINEL and (not master or "/" in master):
        raise ValueError(f"{scheme}:// needs the master name: {scheme}://HOST:PORT/MASTER")
    if topology is Topology.CLUSTER and path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0")
    username, password = _credentials(userinfo) if at else (None, None)
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"ssl_ca_certs"})
    if unknown or ("ssl_ca_certs" in options and not tls):
        raise ValueError(f"unsupported option {unknown[0] if unknown else 'ssl_ca_certs'}")
    ca = options.get("ssl_ca_certs", [None])[-1]
    return RedisTarget(
        topology,
        nodes=nodes,
        master_name=master if topology is Topology.SENTINEL else "",
        tls=tls,
        username=username,
        password=password,
        ssl_ca_certs=ca or None,
    )


def _host_port(part: str, default_port: int) -> tuple[str, int]:
    part = part.strip()
    if part.startswith("["):  # [IPv6]:port
        host, _, port = part[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = part.partition(":")
    if not host:
        raise ValueError("every node needs a host (HOST:PORT, comma-separated)")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError("a node's port must be a number from 1 to 65535")
    return host, int(port) if port else default_port


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    if not colon:  # redis-py reads a lone userinfo as the username
        return unquote(user) or None, None
    return unquote(user) or None, unquote(password) or None
