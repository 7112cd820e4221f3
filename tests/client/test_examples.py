"""The example services, wired to a real authsvc (the demo itself runs them via `make demo`)."""

from __future__ import annotations

import grpc
from authsvc_api.v1 import auth_pb2
from authsvc_client import Credentials

from authsvc.redis_process import free_port
from examples import inventory, orders
from examples.codec import STUB_CODEC
from tests.harness import HarnessFactory


def test_orders_calls_inventory_as_a_service_account(
    authsvc_server_factory: HarnessFactory,
) -> None:
    auth = authsvc_server_factory(audiences=(inventory.AUDIENCE,))
    secret = auth.create_client("orders-svc", (inventory.SCOPE,))
    inventory_port, orders_port = free_port(), free_port()
    callee = inventory.serve(inventory_port, auth.target, issuer=auth.settings.issuer)
    manager = orders.token_manager(
        auth.target, credentials=Credentials.service_account("orders-svc", secret)
    )
    caller = orders.serve(orders_port, orders.Orders(f"127.0.0.1:{inventory_port}", manager))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{orders_port}") as channel:
            place = channel.unary_unary(orders.PLACE_ORDER, **STUB_CODEC)
            answer = place({"item": "apple", "count": 2}, timeout=10)
            assert answer == {
                "item": "apple", "count": 2, "accepted": True, "checked_as": "orders-svc"
            }  # fmt: skip
            tokens = manager.tokens
            assert tokens is not None
            auth.revoke(tokens.refresh_token, auth_pb2.REVOKE_SCOPE_SESSION)
            # Inventory confirms with Validate and refuses; the caller logs in again, retries.
            assert place({"item": "pear", "count": 9}, timeout=10)["accepted"] is False
    finally:
        caller.stop(grace=None)
        callee.stop(grace=None)
    assert auth.rpc_counts["Login"] == 2
