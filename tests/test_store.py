"""What Redis holds at rest: never a password, a refresh token or an access token."""

from __future__ import annotations

from authsvc_api.v1 import auth_pb2

from tests.harness import Harness

PASSWORD = "correct horse battery staple"


async def _everything(h: Harness) -> str:
    """Every key and every value in the store, as one text."""
    r = h.store._r
    parts: list[object] = []
    async for key in r.scan_iter(count=1000):
        parts.append(key)
        kind = await r.type(key)
        if kind == "hash":
            for field, value in (await r.hgetall(key)).items():
                parts += [field, value]
        elif kind == "set":
            parts += list(await r.smembers(key))
        elif kind == "string":
            parts.append(await r.get(key))
    return "\n".join(str(p) for p in parts)


def test_redis_at_rest_holds_no_usable_secret(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("alice", PASSWORD)
    login = h.login("alice", PASSWORD)
    # A rotation inside the grace window leaves the sealed first answer in Redis too.
    pair = h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    stored = h.run(_everything(h))
    assert "authsvc:{u:alice}:user" in stored and "$argon2id$" in stored
    for secret in (
        PASSWORD,
        login.refresh_token,
        pair.refresh_token,
        login.access_token,
        pair.access_token,
        pair.refresh_token.rsplit(".", 1)[1],  # the 256-bit secret part on its own
    ):
        assert secret not in stored
