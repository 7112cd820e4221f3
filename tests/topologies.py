"""Real Redis deployments for tests: a 3-master / 3-replica Cluster and a Sentinel group
(1 master, 2 replicas, 3 sentinels, quorum 2), every process on a free loopback port,
started with the project's one launcher (`authsvc.redis_process`).

Each waits on conditions read from Redis itself (CLUSTER INFO, INFO replication,
SENTINEL MASTER), polled with a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from authsvc.redis_process import RedisProcess, find_redis_cli, free_cluster_port, wait_until

NODE_TIMEOUT_MS = 2000
SENTINEL_DOWN_AFTER_MS = 2000
SENTINEL_MASTER = "authsvc"
_SETTLE_TIMEOUT = 60.0
# A replica's full sync starts at once (Redis waits 5 s for more replicas by default).
_FAST_SYNC = ("--repl-diskless-sync-delay", "0")


def _client(port: int, **kwargs: Any) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2,
        decode_responses=True, **kwargs,
    )  # fmt: skip


def _answers(port: int, check: Callable[[redis.Redis], bool]) -> bool:
    client = _client(port)
    try:
        return check(client)
    except redis.RedisError:
        return False
    finally:
        client.close()


def redis_cli() -> str:
    """The redis-cli binary (the Makefile installs Debian's redis-tools when missing)."""
    found = find_redis_cli()
    if found is None:
        raise RuntimeError("redis-cli not found: apt-get install redis-tools")
    return found


class ClusterDeployment:
    """A Redis Cluster of `masters` masters with one replica each, AOF on every node."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.data_dir = workdir / "authsvc-data"
        """The data directory (key-encryption key) every authsvc on this cluster shares."""
        self.nodes: list[RedisProcess] = []
        for i in range(2 * masters):
            node_dir, port = workdir / f"node{i}", free_cluster_port()
            args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node_dir / f"nodes-{port}.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                *_FAST_SYNC,
            ]  # fmt: skip
            self.nodes.append(RedisProcess(node_dir, port=port, args=args))

    @property
    def url(self) -> str:
        """`redis+cluster://` with every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> ClusterDeployment:
        """Start every node, create the cluster with redis-cli, wait until it is settled."""
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [redis_cli(), "--cluster", "create",
                 *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", "1", "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            self.wait_settled()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def node(self, port: int) -> RedisProcess:
        """The node listening on `port`."""
        return next(n for n in self.nodes if n.port == port)

    def live_nodes(self) -> list[RedisProcess]:
        """Nodes whose process runs."""
        return [n for n in self.nodes if n.running]

    def master_port_of(self, key: str) -> int:
        """The port of the master serving `key`'s slot, as a live node sees it."""
        for node in self.live_nodes():
            client = _client(node.port)
            try:
                slot = int(client.cluster("KEYSLOT", key))
                for start, end, master, *_ in client.cluster("SLOTS"):
                    if int(start) <= slot <= int(end):
                        return int(master[1])
            except redis.RedisError:
                continue
            finally:
                client.close()
        raise RuntimeError("no live node answers CLUSTER SLOTS")

    def wait_settled(self, timeout: float = _SETTLE_TIMEOUT) -> None:
        """Wait until every live node says cluster_state:ok and knows the same masters,
        and every live replica's link to its master is up."""

        def settled() -> bool:
            masters: set[frozenset[str]] = set()
            for node in self.live_nodes():
                info = _node_info(node.port)
                if info is None or info.get("cluster_state") != "ok":
                    return False
                if info.get("role") == "slave" and info.get("master_link_status") != "up":
                    return False
                masters.add(frozenset(info.get("masters", "").split(",")))
            return len(masters) == 1

        wait_until(settled, "cluster settled", timeout)

    def kill_master_of(self, key: str) -> RedisProcess:
        """SIGKILL the master serving `key` (a crash: nothing flushed, no goodbye)."""
        victim = self.node(self.master_port_of(key))
        victim.kill()
        return victim

    def wait_promoted(self, key: str, old: RedisProcess, timeout: float = _SETTLE_TIMEOUT) -> None:
        """Wait until a live node serves `key`'s slot as master and the cluster is ok."""

        def promoted() -> bool:
            try:
                return self.master_port_of(key) != old.port and all(
                    (_node_info(n.port) or {}).get("cluster_state") == "ok"
                    for n in self.live_nodes()
                )
            except RuntimeError:
                return False

        wait_until(promoted, "replica promoted", timeout)

    def restart(self, node: RedisProcess) -> None:
        """Start a killed node again; it rejoins as a replica. Waits until settled."""
        node.start()
        self.wait_settled()


def _node_info(port: int) -> dict[str, str] | None:
    """CLUSTER INFO + INFO replication of one node, and its view of the masters."""
    client = _client(port)
    try:
        info = {str(k): str(v) for k, v in client.cluster("INFO").items()}
        replication = client.info("replication")
        info["role"] = str(replication.get("role", ""))
        info["master_link_status"] = str(replication.get("master_link_status", ""))
        nodes: dict[str, dict[str, Any]] = client.cluster("NODES")
        masters = sorted(
            addr for addr, node in nodes.items()
            if "master" in node["flags"] and "fail" not in node["flags"]
        )  # fmt: skip
        info["masters"] = ",".join(masters)
        return info
    except redis.RedisError:
        return None
    finally:
        client.close()


class SentinelDeployment:
    """One master, `replicas` replicas and three sentinels (quorum 2), AOF everywhere."""

    def __init__(self, workdir: Path, replicas: int = 2, sentinels: int = 3) -> None:
        self.data_dir = workdir / "authsvc-data"
        """The data directory (key-encryption key) every authsvc on this group shares."""
        self.master = RedisProcess(workdir / "r0", args=_FAST_SYNC)
        self.data_nodes = [self.master]
        for i in range(replicas):
            replicaof = [*_FAST_SYNC, "--replicaof", "127.0.0.1", str(self.master.port)]
            self.data_nodes.append(RedisProcess(workdir / f"r{i + 1}", args=replicaof))
        self.sentinels: list[RedisProcess] = []
        for i in range(sentinels):
            sdir = workdir / f"s{i}"
            sdir.mkdir(parents=True, exist_ok=True)
            conf = sdir / "sentinel.conf"
            conf.write_text(
                f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {SENTINEL_MASTER} {SENTINEL_DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SENTINEL_MASTER} 10000\n"
                f"sentinel parallel-syncs {SENTINEL_MASTER} 2\n"
            )
            self.sentinels.append(RedisProcess(sdir, config_file=conf, sentinel=True))

    @property
    def url(self) -> str:
        """`redis+sentinel://` with every sentinel and the master name."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SENTINEL_MASTER}"

    def start(self) -> SentinelDeployment:
        """Start the data nodes, then the sentinels; wait until all know each other."""
        try:
            for process in [*self.data_nodes, *self.sentinels]:
                process.start()
            self.wait_settled()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop sentinels first (no failover on the way down), then the data nodes."""
        for process in [*self.sentinels, *self.data_nodes]:
            process.stop()

    def master_port(self) -> int:
        """The master's port as the sentinels' majority says."""
        votes: dict[int, int] = {}
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            client = _client(sentinel.port)
            try:
                addr: Any = client.sentinel_get_master_addr_by_name(SENTINEL_MASTER)
                if addr:
                    votes[int(addr[1])] = votes.get(int(addr[1]), 0) + 1
            except redis.RedisError:
                pass
            finally:
                client.close()
        if not votes:
            raise RuntimeError("no sentinel answers")
        return max(votes, key=lambda port: votes[port])

    def node(self, port: int) -> RedisProcess:
        """The data node listening on `port`."""
        return next(n for n in self.data_nodes if n.port == port)

    def wait_settled(self, timeout: float = _SETTLE_TIMEOUT, replicas: int | None = None) -> None:
        """Wait until every sentinel agrees on the master and sees the other sentinels,
        and `replicas` replicas (default: every live one) are in sync with that master."""
        live_replicas = sum(1 for n in self.data_nodes if n.running) - 1
        if replicas is not None:
            live_replicas = replicas

        def settled() -> bool:
            try:
                master = self.master_port()
            except RuntimeError:
                return False
            for sentinel in self.sentinels:
                state = _sentinel_state(sentinel.port)
                if state is None or int(state["port"]) != master:
                    return False
                if "s_down" in state["flags"] or "o_down" in state["flags"]:
                    return False
                if int(state["num-other-sentinels"]) != len(self.sentinels) - 1:
                    return False
                if int(state["num-slaves"]) < live_replicas:
                    return False
            return _answers(
                master,
                lambda c: (
                    c.info("replication").get("connected_slaves", 0) >= live_replicas
                    and c.info("replication").get("role") == "master"
                ),
            )

        wait_until(settled, "sentinel group settled", timeout)

    def kill_master(self) -> RedisProcess:
        """SIGKILL the current master."""
        victim = self.node(self.master_port())
        victim.kill()
        return victim

    def wait_promoted(self, old: RedisProcess, timeout: float = _SETTLE_TIMEOUT) -> None:
        """Wait until the sentinels name another master and it answers as master."""

        def promoted() -> bool:
            try:
                port = self.master_port()
            except RuntimeError:
                return False
            return port != old.port and _answers(
                port, lambda c: c.info("replication").get("role") == "master"
            )

        wait_until(promoted, "sentinel failover", timeout)

    def restart(self, node: RedisProcess) -> None:
        """Start a killed data node again; the sentinels make it a replica (within their
        10 s INFO period). Waits only until the master has one replica in sync again."""
        # It comes back as it was configured (a master with old data, or a replica of a
        # dead master) until the sentinels reconfigure it.
        again = RedisProcess(node.dir, port=node.port, args=_FAST_SYNC)
        self.data_nodes[self.data_nodes.index(node)] = again
        again.start()
        self.wait_settled(replicas=1)


def _sentinel_state(port: int) -> dict[str, str] | None:
    client = _client(port)
    try:
        raw: Any = client.sentinel_master(SENTINEL_MASTER)
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        items = list(raw)
        return {str(items[i]): str(items[i + 1]) for i in range(0, len(items), 2)}
    except redis.RedisError:
        return None
    finally:
        client.close()
