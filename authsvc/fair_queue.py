"""A bounded queue of password checks, fair between sources.

Each login holds a ticket from admission until its password check ends. At most
`capacity` tickets exist at once; at most `workers` checks run at once (the hashing
threads), handed out round robin between sources, so a source with a hundred logins
waiting does not delay another source's one by a hundred checks.

When the queue is full a newcomer is answered at once rather than queued: it takes the
place of the newest waiting ticket of the source holding the most tickets, if that source
holds at least two more than the newcomer's; otherwise it is refused. One source alone may
fill the queue, yet it cannot keep any other source out. Everything runs on one event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
from collections.abc import AsyncIterator

from authsvc.errors import LoginBusy


class _State(enum.Enum):
    ADMITTED = "admitted"  # holds a place; has not asked for its turn yet
    WAITING = "waiting"  # asked for its turn
    RUNNING = "running"  # its check runs (a worker is taken)
    EVICTED = "evicted"  # gave its place to another source's ticket
    DONE = "done"  # left the queue


class Ticket:
    """A place in the queue for one login of one source; a context manager that leaves."""

    def __init__(self, queue: FairQueue, source: str) -> None:
        self.source = source
        self._queue = queue
        self._state = _State.ADMITTED
        self._turn: asyncio.Future[None] | None = None

    @property
    def evicted(self) -> bool:
        """True when another source's ticket took this one's place."""
        return self._state is _State.EVICTED

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for a worker (round robin between sources), hold it for the block.

        Raises:
            LoginBusy: the ticket was evicted before its turn came.
        """
        await self._queue._acquire(self)
        try:
            yield
        finally:
            self._queue._finish(self)

    def release(self) -> None:
        """Leave the queue (idempotent)."""
        self._queue._leave(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class FairQueue:
    """Admission to the password checks of one process; see the module docstring."""

    def __init__(self, capacity: int, workers: int, retry_after: float = 1.0) -> None:
        self.capacity = capacity
        self.workers = workers
        self._retry_after = retry_after
        self._held: collections.Counter[str] = collections.Counter()
        self._evictable: dict[str, list[Ticket]] = collections.defaultdict(list)
        self._waiting: dict[str, collections.deque[Ticket]] = {}
        self._rotation: collections.deque[str] = collections.deque()
        self._running = 0

    @property
    def size(self) -> int:
        """Tickets in the queue (waiting or running)."""
        return sum(self._held.values())

    @property
    def running(self) -> int:
        """Checks running now."""
        return self._running

    def held_by(self, source: str) -> int:
        """Tickets `source` holds."""
        return self._held[source]

    def admit(self, source: str) -> Ticket:
        """A ticket for `source`, at once.

        Raises:
            LoginBusy: the queue is full and `source` holds as many as anyone else.
        """
        if self.size >= self.capacity:
            victim = self._victim_for(source)
            if victim is None:
                raise LoginBusy(self._retry_after)
            self._evict(victim)
        ticket = Ticket(self, source)
        self._held[source] += 1
        self._evictable[source].append(ticket)
        return ticket

    def _victim_for(self, source: str) -> Ticket | None:
        """The newest waiting ticket of the largest holder, if taking its place is fairer."""
        mine = self._held[source]
        largest = max(
            (s for s, tickets in self._evictable.items() if tickets),
            key=lambda s: self._held[s],
            default=None,
        )
        if largest is None or largest == source or mine + 1 >= self._held[largest]:
            return None
        return self._evictable[largest][-1]

    def _evict(self, ticket: Ticket) -> None:
        waiting = ticket._state is _State.WAITING
        self._drop(ticket)
        ticket._state = _State.EVICTED
        if waiting and ticket._turn is not None and not ticket._turn.done():
            ticket._turn.set_exception(LoginBusy(self._retry_after))

    def _drop(self, ticket: Ticket) -> None:
        """Remove a ticket that is not running from every index."""
        if ticket._state is _State.WAITING:
            queue = self._waiting[ticket.source]
            queue.remove(ticket)
            if not queue:
                del self._waiting[ticket.source]
                self._rotation.remove(ticket.source)
        self._forget(ticket)

    def _forget(self, ticket: Ticket) -> None:
        source = ticket.source
        self._evictable[source].remove(ticket)
        if not self._evictable[source]:
            del self._evictable[source]
        self._held[source] -= 1
        if not self._held[source]:
            del self._held[source]

    async def _acquire(self, ticket: Ticket) -> None:
        if ticket._state is _State.EVICTED:
            raise LoginBusy(self._retry_after)
        if ticket._state is not _State.ADMITTED:
            raise RuntimeError(f"ticket is {ticket._state.value}, not admitted")
        if self._running < self.workers and not self._rotation:
            self._start(ticket)
            return
        ticket._turn = asyncio.get_running_loop().create_future()
        ticket._state = _State.WAITING
        if ticket.source not in self._waiting:
            self._waiting[ticket.source] = collections.deque()
            self._rotation.append(ticket.source)
        self._waiting[ticket.source].append(ticket)
        try:
            await ticket._turn
        except asyncio.CancelledError:
            if ticket._state is _State.RUNNING:  # granted just before the cancellation
                self._finish(ticket)
            elif ticket._state is _State.WAITING:
                self._drop(ticket)
                ticket._state = _State.DONE
            raise

    def _start(self, ticket: Ticket) -> None:
        self._evictable[ticket.source].remove(ticket)
        if not self._evictable[ticket.source]:
            del self._evictable[ticket.source]
        ticket._state = _State.RUNNING
        self._running += 1

    def _finish(self, ticket: Ticket) -> None:
        """A running ticket's check ended: it leaves, and the next source's turn starts."""
        if ticket._state is not _State.RUNNING:
            return
        ticket._state = _State.DONE
        self._running -= 1
        self._held[ticket.source] -= 1
        if not self._held[ticket.source]:
            del self._held[ticket.source]
        self._dispatch()

    def _dispatch(self) -> None:
        while self._running < self.workers and self._rotation:
            source = self._rotation.popleft()
            queue = self._waiting[source]
            ticket = queue.popleft()
            if queue:
                self._rotation.append(source)
            else:
                del self._waiting[source]
            assert ticket._turn is not None
            if ticket._turn.cancelled():  # its task is being cancelled: it just leaves
                self._forget(ticket)
                ticket._state = _State.DONE
                continue
            self._start(ticket)
            ticket._turn.set_result(None)

    def _leave(self, ticket: Ticket) -> None:
        if ticket._state in (_State.ADMITTED, _State.WAITING):
            self._drop(ticket)
            ticket._state = _State.DONE
