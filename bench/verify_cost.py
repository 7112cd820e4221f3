"""Local verification of an access token against a remote Validate round trip.

authsvc_client has no verifying server interceptor (yet), so "local" is what one would do:
PyJWT verifying the token with the key from the server's JWKS.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable

import grpc
import jwt
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc


@dataclasses.dataclass(frozen=True)
class VerifyCost:
    """Mean cost per check, in microseconds, of each way of verifying one token."""

    local_us: float
    remote_us: float
    local_calls: int
    remote_calls: int
    method: str

    @property
    def ratio(self) -> float:
        """How many local verifications one remote Validate costs."""
        return self.remote_us / self.local_us if self.local_us else float("nan")


def _timed(fn: Callable[[], object], seconds: float) -> tuple[float, int]:
    fn()  # warm up
    n = 0
    started = time.perf_counter()
    end = started + seconds
    while time.perf_counter() < end:
        fn()
        n += 1
    return (time.perf_counter() - started) / n * 1e6, n


def measure(target: str, token: str, audience: str, issuer: str, seconds: float) -> VerifyCost:
    """Time PyJWT verify (JWKS key, same checks) vs a sequential Validate RPC.

    Raises:
        RuntimeError: the token does not verify locally or remotely.
    """
    with grpc.insecure_channel(target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        jwks = json.loads(stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=10).jwks_json)
        kid = jwt.get_unverified_header(token)["kid"]
        jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
        key = jwt.PyJWK.from_dict(jwk)

        def local() -> object:
            return jwt.decode(
                token,
                key.key,
                algorithms=[jwk["alg"]],
                audience=audience,
                issuer=issuer,
                options={"require": ["exp", "iat", "sub", "jti", "aud", "iss"]},
            )

        request = auth_pb2.ValidateRequest(access_token=token)

        def remote() -> object:
            reply = stub.Validate(request, timeout=10)
            if not reply.valid:
                raise RuntimeError("Validate said the benchmark token is invalid")
            return reply

        local_us, local_n = _timed(local, seconds)
        remote_us, remote_n = _timed(remote, seconds)
    return VerifyCost(
        local_us,
        remote_us,
        local_n,
        remote_n,
        "PyJWT decode with the JWKS key (no verifying interceptor in authsvc_client)",
    )
