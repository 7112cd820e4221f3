"""The callee: an inventory service that only answers callers with an authsvc token.

Its one method needs the scope `inventory.read` and the audience `inventory`; every token is
also confirmed with authsvc's Validate, so a revoked session is refused at once.

    python -m examples.inventory --port 50061 --authsvc 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from authsvc_client import (
    AuthsvcClient,
    MethodPolicy,
    ServerAuthInterceptor,
    current_claims,
)

from examples.codec import CODEC

SERVICE = "demo.Inventory"
GET_STOCK = f"/{SERVICE}/GetStock"
AUDIENCE = "inventory"
SCOPE = "inventory.read"

_STOCK = {"apple": 12, "pear": 3}


def get_stock(request: dict[str, Any], context: grpc.ServicerContext) -> dict[str, Any]:
    """How many of an item are in stock; says who asked."""
    item = str(request.get("item", ""))
    return {"item": item, "count": _STOCK.get(item, 0), "asked_by": current_claims().subject}


def serve(port: int, authsvc_target: str, issuer: str = "authsvc") -> grpc.Server:
    """Start the inventory service on 127.0.0.1:`port`; returns the running server."""
    authsvc = AuthsvcClient(grpc.insecure_channel(authsvc_target))
    guard = ServerAuthInterceptor(
        authsvc,
        issuer=issuer,
        audience=AUDIENCE,
        policies={GET_STOCK: MethodPolicy.require(SCOPE)},
        confirm_with_authsvc=True,
    )
    server = grpc.server(ThreadPoolExecutor(max_workers=8), interceptors=[guard])
    handler = grpc.unary_unary_rpc_method_handler(get_stock, **CODEC)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"GetStock": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


def main() -> None:
    """Run the inventory service until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=50061)
    parser.add_argument("--authsvc", default="127.0.0.1:50051")
    args = parser.parse_args()
    serve(args.port, args.authsvc).wait_for_termination()


if __name__ == "__main__":
    main()
