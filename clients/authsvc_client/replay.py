"""Which request streams may be sent twice (for the retry after UNAUTHENTICATED)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

_T = TypeVar("_T")


class Replayable(Generic[_T]):
    """Request messages that may be sent again: pass `Replayable(messages)` as the request
    iterator of a client-streaming call to let the interceptor retry it once when the server
    answers UNAUTHENTICATED. The messages are held in memory. A plain list or tuple counts
    as replayable too; a generator or queue-fed iterator never does.
    """

    def __init__(self, messages: Iterable[_T]) -> None:
        self._messages = tuple(messages)

    def __iter__(self) -> Iterator[_T]:
        return iter(self._messages)

    def __len__(self) -> int:
        return len(self._messages)


def replayable(requests: object) -> bool:
    """Whether `requests` can be iterated again from the start."""
    return isinstance(requests, (Replayable, list, tuple))
