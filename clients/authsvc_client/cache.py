"""The one bounded cache: a least-recently-used map with a fixed number of entries.

Every place that remembers something per token, session or key uses this class, so each
has the same eviction rule: when full, the entry unused for longest goes. A lookup and an
insert are O(1) (`collections.OrderedDict`). The server package uses it too: it depends on
this package, not the other way round.

Entries carry no expiry: every user checks the times of what it finds (it must, to tell
"expired" from "never seen"), and an entry nobody asks for again drifts to the old end and
is the first to go.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A map of at most `max_entries` entries that evicts the least recently used.

    Safe to share between threads (blocking gRPC servers verify on many): each operation
    holds a lock for its few dictionary steps, never while calling `on_evict`.

    Args:
        max_entries: The bound, at least 1.
        on_evict: Called with each entry dropped to make room (not for `pop`, `clear` or a
            replaced value), e.g. to keep an index of the entries in step.

    Raises:
        ValueError: `max_entries` is below 1.
    """

    def __init__(self, max_entries: int, on_evict: Callable[[K, V], None] | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max = max_entries
        self._on_evict = on_evict
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def max_entries(self) -> int:
        """The most entries the cache holds."""
        return self._max

    def get(self, key: K) -> V | None:
        """The value of `key`, now the most recently used; None when absent."""
        with self._lock:
            try:
                self._entries.move_to_end(key)
            except KeyError:
                return None
            return self._entries[key]

    def put(self, key: K, value: V) -> None:
        """Store `value` under `key` as the most recently used; evict the oldest when full."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            evicted = self._entries.popitem(last=False) if len(self._entries) > self._max else None
        if evicted is not None and self._on_evict is not None:
            self._on_evict(*evicted)

    def pop(self, key: K) -> V | None:
        """Remove `key`; returns its value, or None when absent."""
        with self._lock:
            return self._entries.pop(key, None)

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            self._entries.clear()

    def __contains__(self, key: object) -> bool:
        """Whether `key` is cached (does not count as a use)."""
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)
