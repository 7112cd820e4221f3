"""Failure budgets beyond the name's (per source, global), fleets of replicas logging in to
one account, and the fair password-check queue under a flood, over a real server and Redis.

Distinct sources on loopback: calls through `h.stub_from("127.0.0.2")` reach the server
from that peer address."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc

from authsvc import events
from authsvc.login_guard import ATTEMPT_LEASE_SECONDS
from authsvc.store import Admission, NameThrottle
from tests.certs import make_pki_with_clients
from tests.harness import Harness, HarnessFactory
from tests.test_tls import tls_channel

PASSWORD = "correct horse battery staple"
OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.UNAUTHENTICATED
LIMITED = grpc.StatusCode.RESOURCE_EXHAUSTED


def attempt(
    stub: auth_pb2_grpc.AuthServiceStub, name: str, password: str
) -> tuple[grpc.StatusCode, str]:
    """(status, retry-after trailer or "") of one Login."""
    try:
        stub.Login(auth_pb2.LoginRequest(username=name, password=password), timeout=60)
    except grpc.RpcError as exc:
        trailers = exc.trailing_metadata() or ()
        retry = next((str(t.value) for t in trailers if t.key == "retry-after"), "")
        return exc.code(), retry
    return OK, ""


def codes(results: list[tuple[grpc.StatusCode, str]]) -> list[grpc.StatusCode]:
    return [code for code, _ in results]


def throttles(h: Harness) -> list[events.LoginThrottled]:
    return [e for e in h.events.events if isinstance(e, events.LoginThrottled)]


def sheds(h: Harness) -> list[events.LoginShed]:
    return [e for e in h.events.events if isinstance(e, events.LoginShed)]


def in_parallel(
    n: int, call: Callable[[int], tuple[grpc.StatusCode, str]]
) -> list[tuple[grpc.StatusCode, str]]:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(call, range(n)))


# -- per source --------------------------------------------------------------------------


def test_spraying_many_names_from_one_source_is_throttled_by_its_budget(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(login_source_max_failures=20)
    h.create_user("alice", PASSWORD)
    # Two guesses at each of 60 names: far below each name's throttle of 10.
    results = [attempt(h.stub, f"user{i // 2}", f"guess-{i}") for i in range(120)]
    assert codes(results).count(DENIED) == 20  # only the budget reached a password check
    assert codes(results).count(LIMITED) == 100
    assert {retry for code, retry in results if code == LIMITED} == {"30"}  # 600 s / 20
    scoped = {e.scope for e in throttles(h)}
    assert scoped == {events.ThrottleScope.SOURCE}
    assert all(e.source == "127.0.0.1" for e in throttles(h))
    # Another source is not throttled: a right password and a wrong one are both checked.
    other = h.stub_from("127.0.0.2")
    assert attempt(other, "alice", PASSWORD) == (OK, "")
    assert attempt(other, "user1", "guess")[0] == DENIED
    # ... and the sprayer's right password waits like its guesses do.
    assert attempt(h.stub, "alice", PASSWORD)[0] == LIMITED


def test_parallel_guesses_from_one_source_all_count_before_any_check(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(login_source_max_failures=10)
    results = in_parallel(40, lambda i: attempt(h.stub, f"name{i}", "guess"))
    assert codes(results).count(DENIED) == 10
    assert codes(results).count(LIMITED) == 30


def test_a_source_budget_refills_evenly_over_its_window(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(login_source_max_failures=5, login_source_window_seconds=50)
    for i in range(5):
        assert attempt(h.stub, f"n{i}", "guess")[0] == DENIED
    assert attempt(h.stub, "n9", "guess") == (LIMITED, "10")
    h.clock.advance(9)
    assert attempt(h.stub, "n9", "guess") == (LIMITED, "1")
    h.clock.advance(1.01)  # one failure forgotten: one more guess reaches the check
    assert attempt(h.stub, "n9", "guess")[0] == DENIED
    assert attempt(h.stub, "n9", "guess")[0] == LIMITED


def test_right_passwords_give_their_place_back_but_never_refill_the_budget(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(login_source_max_failures=3)
    h.create_user("alice", PASSWORD)
    # Far more right passwords than the budget, in parallel: each gives its place back.
    assert codes(in_parallel(12, lambda _: attempt(h.stub, "alice", PASSWORD))) == [OK] * 12
    assert attempt(h.stub, "x1", "guess")[0] == DENIED
    assert attempt(h.stub, "x2", "guess")[0] == DENIED
    assert attempt(h.stub, "alice", PASSWORD)[0] == OK  # does not reset the source's count
    assert attempt(h.stub, "x3", "guess")[0] == DENIED
    assert attempt(h.stub, "x4", "guess")[0] == LIMITED


def test_an_mtls_source_is_its_identity_not_its_address(
    authsvc_server_factory: HarnessFactory, tmp_path: Path
) -> None:
    ca, server, (sprayer, honest) = make_pki_with_clients(tmp_path, ("sprayer", "honest-svc"))
    h = authsvc_server_factory(
        tls_cert_file=str(server.cert),
        tls_key_file=str(server.key),
        tls_client_ca_file=str(ca.cert),
        login_source_max_failures=3,
    )
    h.create_user("alice", PASSWORD)
    with tls_channel(h.target, ca, sprayer) as a, tls_channel(h.target, ca, honest) as b:
        spraying, other = auth_pb2_grpc.AuthServiceStub(a), auth_pb2_grpc.AuthServiceStub(b)
        assert [attempt(spraying, f"n{i}", "guess")[0] for i in range(4)] == [DENIED] * 3 + [
            LIMITED
        ]
        # The same address (127.0.0.1), another certificate: another budget.
        assert attempt(other, "alice", PASSWORD)[0] == OK
        assert attempt(other, "n9", "guess")[0] == DENIED
    assert {(e.source, e.scope) for e in throttles(h)} == {
        ("mtls:sprayer", events.ThrottleScope.SOURCE)
    }


# -- global ------------------------------------------------------------------------------


def test_a_distributed_guesser_trips_the_global_budget(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(login_global_max_failures=6, login_source_max_failures=4)
    h.create_user("alice", PASSWORD)
    second, third = h.stub_from("127.0.0.2"), h.stub_from("127.0.0.3")
    assert [attempt(h.stub, f"a{i}", "guess")[0] for i in range(3)] == [DENIED] * 3
    assert [attempt(second, f"b{i}", "guess")[0] for i in range(3)] == [DENIED] * 3
    # No source used its own budget up, yet six failures in all stop every source.
    assert attempt(third, "alice", PASSWORD)[0] == LIMITED
    assert throttles(h)[-1].scope is events.ThrottleScope.GLOBAL
    assert throttles(h)[-1].source == "127.0.0.3"
    h.clock.advance(101)  # 600 s / 6 per failure forgotten
    assert attempt(third, "alice", PASSWORD)[0] == OK


# -- a fleet of replicas on one account (issue #8 §3) -------------------------------------


def test_fifty_simultaneous_right_logins_of_one_account_all_succeed(
    authsvc_server: Harness,
) -> None:
    h = authsvc_server
    secret = h.create_client("fleet-svc", scopes=("read",))
    results = in_parallel(50, lambda _: attempt(h.stub, "fleet-svc", secret))
    assert codes(results) == [OK] * 50
    assert not throttles(h)
    # Twenty more from twenty sources at once (each replica its own address).
    stubs = [h.stub_from(f"127.0.1.{i + 1}") for i in range(20)]
    assert codes(in_parallel(20, lambda i: attempt(stubs[i], "fleet-svc", secret))) == [OK] * 20


def test_thirty_parallel_wrong_guesses_reach_the_check_at_most_ten_times(
    authsvc_server: Harness,
) -> None:
    h = authsvc_server
    secret = h.create_client("fleet-svc", scopes=("read",))
    results = in_parallel(30, lambda i: attempt(h.stub, "fleet-svc", f"wrong-{i}"))
    assert codes(results).count(DENIED) == 10
    assert codes(results).count(LIMITED) == 20
    failed = [e for e in h.events.events if isinstance(e, events.LoginFailed)]
    assert len(failed) == 10  # one event per password check
    assert attempt(h.stub, "fleet-svc", secret)[0] == LIMITED  # throttled, right or wrong


def test_an_attempt_whose_process_died_counts_as_a_failure_when_its_lease_ends(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(login_max_failures=3, login_wait_seconds=0.3)
    h.create_user("alice", PASSWORD)
    throttle = NameThrottle(3, 1000, 900_000)
    now_ms = int(h.clock() * 1000)
    lease_ms = now_ms + int(ATTEMPT_LEASE_SECONDS * 1000)
    for i in range(3):  # three attempts counted by a process that then died
        gate = h.run(h.store.begin_login("alice", f"dead-{i}", now_ms, lease_ms, throttle))
        assert gate.admission is Admission.OPEN
    # Their places are held: a login waits for them, then gives up (nothing is checked).
    assert attempt(h.stub, "alice", PASSWORD) == (LIMITED, "1")
    assert [e.reason for e in sheds(h)] == [events.ShedReason.BUSY]
    h.clock.advance(ATTEMPT_LEASE_SECONDS + 1)
    # The leases ended unsettled: three failures, the name's throttle.
    assert attempt(h.stub, "alice", PASSWORD)[0] == LIMITED
    assert throttles(h)[-1].scope is events.ThrottleScope.ACCOUNT


# -- the fair password-check queue (issue #8 §2) ------------------------------------------


def test_a_flood_from_one_source_is_shed_at_once_and_another_source_still_logs_in(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(
        login_queue_size=4, hash_threads=1, login_source_max_failures=100_000
    )
    h.create_user("alice", PASSWORD)
    honest = h.stub_from("127.0.0.2")
    shed_seen = threading.Event()
    stop = threading.Event()
    flood: list[tuple[grpc.StatusCode, str]] = []

    def flood_loop(worker: int) -> None:
        for i in range(400):  # bounded; stops as soon as the honest login is done
            if stop.is_set():
                return
            result = attempt(h.stub, f"victim{worker}-{i}", "guess")
            flood.append(result)
            if result[0] == LIMITED:
                shed_seen.set()

    with ThreadPoolExecutor(max_workers=12) as pool:
        workers = [pool.submit(flood_loop, w) for w in range(12)]
        try:
            assert shed_seen.wait(timeout=60), "the flood never filled the queue"
            outcome = attempt(honest, "alice", PASSWORD)
        finally:
            stop.set()
            for w in workers:
                w.result(timeout=60)
    assert outcome == (OK, "")
    refused = [r for r in flood if r[0] == LIMITED]
    assert refused and {retry for _, retry in refused} == {"1"}
    assert set(codes(flood)) <= {DENIED, LIMITED}
    assert {e.source for e in sheds(h)} == {"127.0.0.1"}
    assert {e.reason for e in sheds(h)} <= {
        events.ShedReason.QUEUE_FULL,
        events.ShedReason.EVICTED,
    }
    assert not throttles(h)  # shed for want of a place, not for failures


@pytest.mark.parametrize("queue_size", [1, 3])
def test_a_source_alone_may_use_the_whole_queue(
    authsvc_server_factory: HarnessFactory, queue_size: int
) -> None:
    h = authsvc_server_factory(login_queue_size=queue_size, hash_threads=1)
    h.create_user("alice", PASSWORD)
    results = in_parallel(queue_size, lambda _: attempt(h.stub, "alice", PASSWORD))
    assert codes(results) == [OK] * queue_size
