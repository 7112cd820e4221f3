"""The caller: an orders service that asks the inventory service, as a service account.

The channel to the inventory carries the service account's bearer token through the
client interceptor; the token manager refreshes it before it expires.

    python -m examples.orders --port 50062 --inventory 127.0.0.1:50061 \
        --authsvc 127.0.0.1:50051 --client-id orders-svc   # secret on stdin
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from authsvc_client import AuthsvcClient, Credentials, TokenManager, Tokens, insecure_channel

from examples.codec import CODEC, STUB_CODEC
from examples.inventory import AUDIENCE, GET_STOCK, SCOPE

SERVICE = "demo.Orders"
PLACE_ORDER = f"/{SERVICE}/PlaceOrder"


def token_manager(
    authsvc_target: str,
    *,
    credentials: Credentials | None = None,
    tokens: Tokens | None = None,
) -> TokenManager:
    """A token manager for the orders service's account, for the inventory audience."""
    authsvc = AuthsvcClient(
        grpc.insecure_channel(authsvc_target), audience=AUDIENCE, scopes=[SCOPE]
    )
    return TokenManager(authsvc, credentials=credentials, tokens=tokens)


class Orders:
    """PlaceOrder checks the stock with the inventory service, then accepts the order."""

    def __init__(self, inventory_target: str, manager: TokenManager) -> None:
        # The one line that makes every call carry (and refresh) the bearer token.
        channel = insecure_channel(inventory_target, manager)
        self._get_stock = channel.unary_unary(GET_STOCK, **STUB_CODEC)

    def place_order(self, request: dict[str, Any], context: grpc.ServicerContext) -> dict[str, Any]:
        """Accept the order if the inventory has enough."""
        item, count = str(request.get("item", "")), int(request.get("count", 1))
        try:
            stock = self._get_stock({"item": item}, timeout=10)
        except grpc.RpcError as exc:
            code = exc.code()
            context.abort(code, f"inventory refused: {exc.details()}")
        accepted = stock["count"] >= count
        return {"item": item, "count": count, "accepted": accepted, "checked_as": stock["asked_by"]}


def serve(port: int, orders: Orders) -> grpc.Server:
    """Start the orders service on 127.0.0.1:`port`."""
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    handler = grpc.unary_unary_rpc_method_handler(orders.place_order, **CODEC)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"PlaceOrder": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


def main() -> None:
    """Run the orders service until interrupted; the client secret is read from stdin."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=50062)
    parser.add_argument("--inventory", default="127.0.0.1:50061")
    parser.add_argument("--authsvc", default="127.0.0.1:50051")
    parser.add_argument("--client-id", default="orders-svc")
    args = parser.parse_args()
    secret = sys.stdin.readline().strip()
    manager = token_manager(
        args.authsvc, credentials=Credentials.service_account(args.client_id, secret)
    )
    serve(args.port, Orders(args.inventory, manager)).wait_for_termination()


if __name__ == "__main__":
    main()
