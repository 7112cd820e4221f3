"""The one bounded cache: least-recently-used eviction, its bound, and its callback."""

from __future__ import annotations

import threading

import pytest
from authsvc_client.cache import LruCache


def test_a_hit_protects_an_entry_from_eviction() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("c", 3)
    assert "b" not in cache
    assert (cache.get("a"), cache.get("c")) == (1, 3)


def test_without_hits_the_oldest_insert_goes_first() -> None:
    cache: LruCache[int, str] = LruCache(3)
    for n in range(5):
        cache.put(n, str(n))
    assert [n for n in range(5) if n in cache] == [2, 3, 4]
    assert len(cache) == 3 == cache.max_entries


def test_replacing_a_value_refreshes_it_and_does_not_grow() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert cache.get("a") == 10 and "b" not in cache and len(cache) == 2


def test_contains_is_not_a_use() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert "a" in cache
    cache.put("c", 3)
    assert "a" not in cache and "b" in cache


def test_falsy_and_none_values_are_hits() -> None:
    cache: LruCache[str, int | None] = LruCache(2)
    cache.put("zero", 0)
    cache.put("none", None)
    assert cache.get("zero") == 0
    cache.get("none")  # a use, although the value reads like a miss
    cache.put("new", 1)
    assert "none" in cache and "zero" not in cache


def test_pop_and_clear() -> None:
    cache: LruCache[str, int] = LruCache(4)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.pop("a") == 1 and cache.pop("a") is None
    assert cache.get("a") is None
    cache.clear()
    assert len(cache) == 0 and cache.get("b") is None


def test_on_evict_hears_only_entries_dropped_for_room() -> None:
    evicted: list[tuple[str, int]] = []
    cache: LruCache[str, int] = LruCache(2, on_evict=lambda k, v: evicted.append((k, v)))
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("b", 20)  # replaced, not evicted
    cache.pop("a")  # removed on purpose, not evicted
    cache.put("c", 3)
    cache.put("d", 4)
    cache.clear()
    assert evicted == [("b", 20)]


def test_on_evict_may_use_the_cache() -> None:
    """The callback runs outside the lock, so it can read the cache without deadlock."""
    seen: list[tuple[str, int | None]] = []

    def on_evict(key: str, value: int) -> None:
        seen.append((key, cache.get("b")))

    cache: LruCache[str, int] = LruCache(1, on_evict=on_evict)
    cache.put("a", 1)
    cache.put("b", 2)
    assert seen == [("a", 2)]


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LruCache[str, int](0)


def test_threads_sharing_a_cache_keep_it_bounded_and_consistent() -> None:
    cache: LruCache[int, int] = LruCache(64)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        start.wait()
        try:
            for n in range(5000):
                key = (n * 7 + offset) % 256
                cache.put(key, key)
                value = cache.get((key + 1) % 256)
                assert value is None or value == (key + 1) % 256
                if n % 5 == 0:
                    cache.pop((key + 2) % 256)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(cache) <= 64
