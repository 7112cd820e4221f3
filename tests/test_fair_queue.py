"""FairQueue: bounded, refuses at once when full, fair between sources (admission by
eviction of the largest holder's newest ticket, turns round robin)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from authsvc.errors import LoginBusy
from authsvc.fair_queue import FairQueue, Ticket


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=10))


class Checks:
    """Drives tickets through their turns and records the order turns start in."""

    def __init__(self, queue: FairQueue) -> None:
        self.queue = queue
        self.order: list[str] = []
        self.release = asyncio.Event()

    async def check(self, ticket: Ticket, label: str) -> None:
        with ticket:
            async with ticket.turn():
                self.order.append(label)
                await self.release.wait()

    async def settle(self) -> None:
        """Let every runnable task run until it blocks."""
        for _ in range(5):
            await asyncio.sleep(0)


def test_a_full_queue_refuses_at_once() -> None:
    async def body() -> None:
        queue = FairQueue(capacity=3, workers=1)
        tickets = [queue.admit("a") for _ in range(3)]
        with pytest.raises(LoginBusy) as excinfo:
            queue.admit("a")
        assert excinfo.value.retry_after == 1
        tickets[0].release()
        queue.admit("a").release()  # a place came free
        assert queue.size == 2

    run(body)


def test_one_source_alone_may_fill_the_queue_but_not_keep_another_out() -> None:
    async def body() -> None:
        queue = FairQueue(capacity=4, workers=1)
        checks = Checks(queue)
        flood = [queue.admit("flood") for _ in range(4)]
        tasks = [asyncio.create_task(checks.check(t, f"flood{i}")) for i, t in enumerate(flood)]
        await checks.settle()  # flood0 runs, flood1-3 wait
        honest = queue.admit("honest")  # evicts the flood's newest waiting ticket
        assert flood[3].evicted and queue.held_by("flood") == 3
        with pytest.raises(LoginBusy):
            await tasks[3]
        with pytest.raises(LoginBusy):  # the flood gets no place back: it holds the most
            queue.admit("flood")
        honest_task = asyncio.create_task(checks.check(honest, "honest"))
        await checks.settle()
        checks.release.set()
        await asyncio.gather(*tasks[:3], honest_task)
        # Turns go round robin: the honest login's check is the flood's next but one.
        assert checks.order == ["flood0", "flood1", "honest", "flood2"]
        assert queue.size == 0 and queue.running == 0

    run(body)


def test_turns_alternate_between_sources_not_first_come_first_served() -> None:
    async def body() -> None:
        queue = FairQueue(capacity=16, workers=1)
        checks = Checks(queue)
        blocker = queue.admit("x")
        tasks = [asyncio.create_task(checks.check(blocker, "x"))]
        await checks.settle()  # "x" holds the only worker
        for i in range(5):
            tasks.append(asyncio.create_task(checks.check(queue.admit("a"), f"a{i}")))
        await checks.settle()
        for i in range(2):
            tasks.append(asyncio.create_task(checks.check(queue.admit("b"), f"b{i}")))
        await checks.settle()
        checks.release.set()
        await asyncio.gather(*tasks)
        assert checks.order == ["x", "a0", "b0", "a1", "b1", "a2", "a3", "a4"]

    run(body)


def test_no_eviction_when_it_would_not_be_fairer() -> None:
    async def body() -> None:
        queue = FairQueue(capacity=2, workers=1)
        queue.admit("a")
        queue.admit("b")
        with pytest.raises(LoginBusy):  # "a" and "b" hold one each: "c" would not be fairer
            queue.admit("c")

    run(body)


def test_a_running_check_is_never_evicted() -> None:
    async def body() -> None:
        queue = FairQueue(capacity=2, workers=2)
        checks = Checks(queue)
        tasks = [asyncio.create_task(checks.check(queue.admit("a"), f"a{i}")) for i in range(2)]
        await checks.settle()
        assert queue.running == 2
        with pytest.raises(LoginBusy):
            queue.admit("b")
        checks.release.set()
        await asyncio.gather(*tasks)

    run(body)


def test_cancelled_waiters_leave_and_a_granted_turn_passes_on() -> None:
    async def body() -> None:
        queue = FairQueue(capacity=8, workers=1)
        checks = Checks(queue)
        first = asyncio.create_task(checks.check(queue.admit("a"), "a0"))
        await checks.settle()
        waiting = asyncio.create_task(checks.check(queue.admit("b"), "b0"))
        last = asyncio.create_task(checks.check(queue.admit("c"), "c0"))
        await checks.settle()
        waiting.cancel()
        await checks.settle()
        assert queue.size == 2 and queue.held_by("b") == 0
        checks.release.set()
        await asyncio.gather(first, last)
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert checks.order == ["a0", "c0"] and queue.size == 0 and queue.running == 0

    run(body)
