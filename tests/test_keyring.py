"""The signing-key ring shared through Redis: the schedule, sealing, rotation across
instances and verifiers, and what Redis alone reveals."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from authsvc_api.v1 import auth_pb2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from authsvc import events
from authsvc.keyring import RETIRE_MARGIN_SECONDS, KeyRing, RingKey, Schedule, plan
from authsvc.keys import (
    PrivateKey,
    StaticKeys,
    generate_private_key,
    keyset_of,
    private_key_pem,
    verification_key,
)
from authsvc.sealing import KeyEncryptionKey, load_kek
from authsvc.store import SIGNING_KEYS, AddKeyIf, StoredSigningKey
from authsvc.tokens import AccessTokenCodec
from tests.client.target import Target, stubs
from tests.harness import Harness, HarnessFactory

PASSWORD = "correct horse battery staple"
TTL = 60
CACHE = 600  # AUTHSVC_JWKS_CACHE_SECONDS, and the client library's key-set max age
STEP = 20  # below the client library's 30 s unknown-kid refetch limit
OK = grpc.StatusCode.OK


def ring_key(kid: str, published_s: int, activates_s: int) -> RingKey:
    return RingKey(kid, "EdDSA", generate_private_key("EdDSA"), published_s * 1000,
                   activates_s * 1000)  # fmt: skip


def at(keys: list[RingKey], now_s: int, retain_s: int = 100) -> Schedule:
    schedule = plan(keys, now_s * 1000, retain_s * 1000)
    assert schedule is not None
    return schedule


def test_the_schedule_follows_the_times_of_the_records() -> None:
    a, b, c = ring_key("a", 0, 0), ring_key("b", 1000, 1600), ring_key("c", 1100, 1700)
    keys = [c, a, b]
    s = at(keys, 1200)
    assert (s.signing, s.upcoming, s.retired) == (a, (b, c), ())
    assert s.next_change_ms == 1600_000
    s = at(keys, 1600)  # b signs; a verifies until its last token is gone
    assert (s.signing, s.upcoming, s.retired) == (b, (c,), ((a, 1700_000),))
    s = at(keys, 1700)  # c signs; a has left, b verifies for 100 s more
    assert (s.signing, s.upcoming, s.retired, s.expired) == (c, (), ((b, 1800_000),), ("a",))
    s = at(keys, 1800)
    assert (s.signing, s.verifying, s.expired, s.next_change_ms) == (c, (c,), ("a", "b"), 1e999)
    assert plan([], 0, 0) is None


def test_a_first_key_seen_from_a_clock_behind_its_creator_still_signs() -> None:
    first = ring_key("first", 1000, 1000)
    assert at([first], 998).signing == first


def signing_kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def jwks_kids(h: Harness) -> list[str]:
    jwks = json.loads(h.stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=10).jwks_json)
    return [key["kid"] for key in jwks["keys"]]


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def ring_private_keys(h: Harness) -> dict[str, PrivateKey]:
    """Every key of the ring, opened with the instances' KEK (the test may: it has it)."""
    ring = KeyRing(h.settings, h.store, load_kek(h.settings), h.clock)
    schedule = h.run(ring.schedule())
    assert schedule is not None
    return {k.kid: k.private_key for k in schedule.verifying}


@pytest.fixture
def targets() -> Iterator[list[Target]]:
    """Protected services started by the test, closed at the end."""
    made: list[Target] = []
    yield made
    for target in made:
        target.close()


def test_rotation_under_load_refuses_no_valid_token_and_accepts_no_removed_key(
    authsvc_server_factory: HarnessFactory, targets: list[Target]
) -> None:
    settings: dict[str, Any] = dict(
        access_ttl_seconds=TTL, jwks_cache_seconds=CACHE, key_rotation_seconds=CACHE
    )
    a = authsvc_server_factory(**settings)
    b = authsvc_server_factory(shared_with=a, **settings)
    secret = a.create_client("svc")
    # Resource services verifying locally with the client library, one per instance and
    # kind, each with its own JWKS cache (refetch after 600 s, unknown kid: at most every 30 s).
    targets += [Target(a), Target(b, aio=True)]
    callers = [stubs(grpc.insecure_channel(t.address))["unary"] for t in targets]
    refresh_tokens = {h: h.login("svc", secret).refresh_token for h in (a, b)}
    live: list[tuple[str, int]] = []  # (token, exp)
    private_keys: dict[str, PrivateKey] = {}
    removed_at: dict[str, float] = {}
    refused: list[tuple[float, str, str]] = []
    accepted_removed: list[tuple[float, str, str]] = []
    aged_out_checks = 0
    codec_args = (a.settings.issuer, a.settings.allowed_audiences, a.settings.leeway_seconds)

    def accepted(token: str, with_targets: bool = True) -> list[str]:
        """The verifiers that accept `token`: both instances' Validate, and the targets."""
        yes = []
        for h in (a, b):
            if h.stub.Validate(auth_pb2.ValidateRequest(access_token=token), timeout=10).valid:
                yes.append(f"validate@{h.target}")
        for i, call in enumerate(callers if with_targets else []):
            if code_of(lambda: call(b"", metadata=bearer(token), timeout=10)) == OK:  # noqa: B023
                yes.append(f"target{i}")
        return yes

    def check_live(now: float) -> None:
        everyone = {f"validate@{h.target}" for h in (a, b)} | {"target0", "target1"}
        for token, exp in live:
            if now < exp:
                for verifier in everyone - set(accepted(token)):
                    refused.append((now, signing_kid(token), verifier))

    steps = 3 * CACHE // STEP + 20  # ~ four keys through their whole life
    for step in range(steps):
        a.clock.advance(STEP)
        now = a.clock()
        check_live(now)
        # Operators rotate too (twice in a row: back-to-back keys), on one instance; the
        # other has just read the ring and learns of the key only at its next poll.
        rotating = {20: a, 21: a, 45: b}.get(step)
        if rotating is not None:
            rotating.run(rotating.server.service.keys.rotate("test", "test"))
        for h in (a, b):
            pair = h.stub.Refresh(
                auth_pb2.RefreshRequest(refresh_token=refresh_tokens[h]), timeout=10
            )
            refresh_tokens[h] = pair.refresh_token
            live.append((pair.access_token, int(now) + TTL))
        live = [(t, exp) for t, exp in live if now < exp]
        check_live(now)
        private_keys.update(ring_private_keys(a))
        published = set(jwks_kids(a)) | set(jwks_kids(b))
        for kid in set(private_keys) - published:
            removed_at.setdefault(kid, now)
        # A token signed now by a removed key (as with a stolen key) is refused by authsvc
        # at once, and by the client library once its cached key set has aged out.
        sid = jwt.decode(live[-1][0], options={"verify_signature": False})["sid"]
        for kid, since in removed_at.items():
            forger = AccessTokenCodec(StaticKeys(keyset_of(private_keys[kid])), *codec_args)
            forged, _ = forger.mint(
                subject="svc", session_id=sid, scopes=["read", "write"], audience="authsvc",
                client_id="svc", now=now, ttl=TTL,
            )  # fmt: skip
            assert signing_kid(forged) == kid
            aged_out = now - since >= CACHE
            aged_out_checks += aged_out
            for verifier in accepted(forged, with_targets=aged_out):
                accepted_removed.append((now, kid, verifier))

    assert refused == []
    assert accepted_removed == []
    # The run went through several rotations, and keys really left the JWKS.
    assert len(private_keys) >= 6 and len(removed_at) >= 3 and aged_out_checks >= 10
    assert len(jwks_kids(a)) <= 4
    # Exactly one instance added each automatic key.
    auto = [e.kid for h in (a, b) for e in h.events.events
            if isinstance(e, events.KeyRotated) and e.by == "schedule"]  # fmt: skip
    assert len(auto) >= 2 and len(auto) == len(set(auto))


def test_a_new_key_is_published_a_cache_period_before_it_signs(
    authsvc_server_factory: HarnessFactory,
) -> None:
    a = authsvc_server_factory(access_ttl_seconds=TTL)
    b = authsvc_server_factory(shared_with=a, access_ttl_seconds=TTL)
    secret = a.create_client("svc")
    old = signing_kid(a.login("svc", secret).access_token)
    new = a.run(a.server.service.keys.rotate("test", "test"))
    a.clock.advance(10)  # one poll: b reads the ring again
    for h in (a, b):
        assert jwks_kids(h) == [old, new.kid]  # published everywhere...
        assert signing_kid(h.login("svc", secret).access_token) == old  # ...not signing
    a.clock.advance(CACHE - 10)
    for h in (a, b):
        assert signing_kid(h.login("svc", secret).access_token) == new.kid
        assert jwks_kids(h) == [new.kid, old]  # the old one stays while its tokens live
    a.clock.advance(TTL + a.settings.leeway_seconds + RETIRE_MARGIN_SECONDS)
    for h in (a, b):
        assert jwks_kids(h) == [new.kid]
    assert list(ring_private_keys(a)) == [new.kid]  # pruned from Redis too


def test_redis_alone_holds_no_usable_private_key(authsvc_server_factory: HarnessFactory) -> None:
    h = authsvc_server_factory()
    h.create_user("alice", PASSWORD)
    h.login("alice", PASSWORD)
    h.run(h.server.service.keys.rotate("test", "test"))
    found = h.run(everything_in_redis(h))
    assert any("sealed" in value for value in found)  # the ring is there...
    loaded = [text for text in found if private_key_in(text)]
    assert loaded == []  # ...but nothing in Redis loads as a private key
    # What the ring holds opens with the KEK, which is in a file (0600), not in Redis.
    kek_file = h.settings.data_dir / "keys" / "key-encryption.key"
    assert kek_file.stat().st_mode & 0o777 == 0o600
    assert kek_file.read_text().strip() not in "\n".join(found)
    assert len(ring_private_keys(h)) == 2


async def everything_in_redis(h: Harness) -> list[str]:
    """Every key name and value in Redis, as text (SCAN, then each type's read)."""
    r = h.store._r
    found: list[str] = []
    async for key in r.scan_iter(count=1000):
        found.append(str(key))
        kind = await r.type(key)
        if kind == "hash":
            found += [str(f) + "=" + str(v) for f, v in (await r.hgetall(key)).items()]
        elif kind == "string":
            found.append(str(await r.get(key)))
        elif kind == "set":
            found += [str(m) for m in await r.smembers(key)]
        elif kind == "list":
            found += [str(m) for m in await r.lrange(key, 0, -1)]
        elif kind == "zset":
            found += [str(m) for m in await r.zrange(key, 0, -1)]
    return found


def private_key_in(text: str) -> bool:
    """Whether any PEM, JWK or base64 DER in `text` loads as a private key."""
    candidates: list[bytes] = [text.encode()]
    for chunk in re.findall(r"[A-Za-z0-9+/=_-]{40,}", text):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                candidates.append(decode(chunk + "=" * (-len(chunk) % 4)))
            except (ValueError, binascii.Error):
                pass
    for data in candidates:
        for load in (serialization.load_pem_private_key, serialization.load_der_private_key):
            try:
                load(data, password=None)
                return True
            except (ValueError, TypeError):
                pass
    for doc in re.findall(r"\{.*?\}", text):
        try:
            if "d" in json.loads(doc):
                jwt.PyJWK(json.loads(doc))
                return True
        except (ValueError, jwt.PyJWTError, TypeError):
            pass
    return False


def test_the_key_scan_finds_an_unsealed_key() -> None:
    """The scanner above is not blind: it finds keys in every form Redis could hold."""
    key = ed25519.Ed25519PrivateKey.generate()
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(key)
    for text in (private_key_pem(key).decode(), base64.b64encode(der).decode(), jwk):
        assert private_key_in(f'{{"x":1}} {text}')


def test_a_record_that_does_not_open_never_verifies(authsvc_server_factory: HarnessFactory) -> None:
    h = authsvc_server_factory()
    h.create_user("alice", PASSWORD)
    before = jwks_kids(h)
    new = h.run(h.server.service.keys.rotate("test", "test"))
    # Someone with write access to Redis adds their own key, sealed under another KEK,
    # and moves an honest record's activation time.
    theirs = generate_private_key("EdDSA")
    kid = verification_key(theirs.public_key()).kid
    now_ms = int(h.clock() * 1000)
    sealed = KeyEncryptionKey(b"x" * 32).seal(theirs, b"anything")
    forged = StoredSigningKey(kid, "EdDSA", sealed, now_ms, now_ms, "attacker")
    assert h.run(h.store.add_signing_key(forged, AddKeyIf.ALWAYS))
    (honest,) = [r for r in h.run(h.store.signing_keys()) if r.kid == before[0]]
    moved = StoredSigningKey(honest.kid, honest.alg, honest.sealed, honest.published_ms,
                             honest.activates_ms + 5, honest.by)  # fmt: skip
    h.run(h.store._r.hset(SIGNING_KEYS, honest.kid, moved.to_json()))
    h.clock.advance(CACHE)
    assert jwks_kids(h) == [new.kid]  # a record changed in Redis no longer opens either
    codec = AccessTokenCodec(StaticKeys(keyset_of(theirs)), "authsvc", ["authsvc"], 10)
    token, _ = codec.mint(subject="alice", session_id="s", scopes=[], audience="authsvc",
                          client_id="", now=h.clock(), ttl=60)  # fmt: skip
    answer = h.stub.Validate(auth_pb2.ValidateRequest(access_token=token))
    assert answer.reason == auth_pb2.INVALID_REASON_UNKNOWN_KEY
    assert h.login("alice", PASSWORD)  # and the instance signs on with its own keys


def test_an_instance_with_another_kek_refuses_to_start(
    authsvc_server_factory: HarnessFactory, tmp_path: Path
) -> None:
    a = authsvc_server_factory()
    other = tmp_path / "other.kek"
    other.write_bytes(base64.b64encode(b"k" * 32))
    with pytest.raises(Exception, match="AUTHSVC_KEY_ENCRYPTION_KEY_FILE"):
        authsvc_server_factory(shared_with=a, key_encryption_key_file=str(other))
    # Nor may a CLI with that KEK add a key the instances could not open.
    ring = KeyRing(a.settings, a.store, load_kek(a.settings.__class__(
        key_encryption_key_file=str(other))), a.clock)  # fmt: skip
    with pytest.raises(Exception, match="opens none"):
        a.run(ring.rotate("test", "test"))


def test_automatic_rotation_adds_one_key_per_period(authsvc_server_factory: HarnessFactory) -> None:
    a = authsvc_server_factory(key_rotation_seconds=3 * CACHE)
    b = authsvc_server_factory(shared_with=a, key_rotation_seconds=3 * CACHE)
    first = jwks_kids(a)
    for _ in range(2):
        a.clock.advance(CACHE)
        assert jwks_kids(a) == first and jwks_kids(b) == first  # not due yet
    a.clock.advance(CACHE)
    jwks_kids(a), jwks_kids(b)  # both find it due; one adds the key
    assert len(jwks_kids(a)) == 2 and jwks_kids(a) == jwks_kids(b)
    rotated = [e for h in (a, b) for e in h.events.events if isinstance(e, events.KeyRotated)]
    (event,) = rotated
    assert (event.by, event.source, event.previous_kid) == ("schedule", "authsvc", first[0])


def test_redis_down_at_start_delays_the_keys_not_the_start(
    authsvc_server_factory: HarnessFactory,
) -> None:
    a = authsvc_server_factory()
    a.stop_redis()
    b = authsvc_server_factory(shared_with=a)
    code = code_of(lambda: b.stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=10))
    assert code == grpc.StatusCode.UNAVAILABLE
    a.start_redis()
    a.clock.advance(10)  # the next poll
    assert jwks_kids(b) == jwks_kids(a)


def test_an_existing_data_dir_key_becomes_the_first_key_of_the_ring(
    authsvc_server_factory: HarnessFactory, tmp_path: Path
) -> None:
    legacy = generate_private_key("EdDSA")
    key_file = tmp_path / "h0" / "data" / "keys" / "signing-eddsa.pem"
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(private_key_pem(legacy))
    h = authsvc_server_factory()
    assert jwks_kids(h) == [verification_key(legacy.public_key()).kid]


def test_verify_key_files_are_accepted_with_the_ring(
    authsvc_server_factory: HarnessFactory, tmp_path: Path
) -> None:
    extra = generate_private_key("EdDSA")
    pem = tmp_path / "extra.pem"
    pem.write_bytes(private_key_pem(extra))
    h = authsvc_server_factory(verify_key_files=(str(pem),))
    h.create_user("alice", PASSWORD)
    sid = h.login("alice", PASSWORD).session_id
    codec = AccessTokenCodec(StaticKeys(keyset_of(extra)), "authsvc", ["authsvc"], 10)
    token, _ = codec.mint(subject="alice", session_id=sid, scopes=[], audience="authsvc",
                          client_id="", now=h.clock(), ttl=60)  # fmt: skip
    assert h.stub.Validate(auth_pb2.ValidateRequest(access_token=token)).valid
    assert verification_key(extra.public_key()).kid in jwks_kids(h)
