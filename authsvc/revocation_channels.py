"""Where revocation events are published, per topology.

One Redis and Sentinel: one classic pub/sub channel, `authsvc:revocations` (PUBLISH).

Redis Cluster: classic PUBLISH travels to other nodes over the cluster bus, later than
the publisher's answer, and a classic subscriber does not follow failovers. So events
go to *sharded* channels (SPUBLISH, Redis >= 7.0), which stay inside the shard that
owns their slot. A script may only publish to a channel in its own keys' slot, so there
is one channel per slot, `authsvc:revocations:{TAG}`, where TAG is the shortest
hex number hashing to that slot; a user's events go to the channel of the slot of
`{u:NAME}`. A subscriber subscribes on each master to the channels of the slots it
owns, and Redis tells it (SUNSUBSCRIBE) when a slot moves away.
"""

from __future__ import annotations

import functools

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

CLASSIC_CHANNEL = "authsvc:revocations"
_SHARD_PREFIX = CLASSIC_CHANNEL + ":"
SLOTS = REDIS_CLUSTER_HASH_SLOTS


@functools.cache
def _slot_tags() -> tuple[str, ...]:
    """For every slot, the shortest hex tag that hashes to it (computed once, ~0.2 s)."""
    tags: list[str | None] = [None] * SLOTS
    left, n = SLOTS, 0
    while left:
        tag = f"{n:x}"
        slot = key_slot(tag.encode())
        if tags[slot] is None:
            tags[slot] = tag
            left -= 1
        n += 1
    return tuple(t for t in tags if t is not None)


def user_slot(name: str) -> int:
    """The cluster slot of every key of user `name` (hash tag `{u:NAME}`)."""
    return key_slot(f"u:{name}".encode())


def shard_channel(slot: int) -> str:
    """The sharded channel of `slot`; it hashes to `slot` itself."""
    return f"{_SHARD_PREFIX}{{{_slot_tags()[slot]}}}"


def channel_for(name: str, sharded: bool) -> str:
    """The channel a revocation of user `name` is published on."""
    return shard_channel(user_slot(name)) if sharded else CLASSIC_CHANNEL
