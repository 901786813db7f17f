"""Places, reads, lists and cancels an order through a client that
openapi-python-client generated from openapi/openapi.json (not our own code),
against a running API and worker. scripts/contract runs it.

Usage: generated_client_smoke.py CLIENT_DIR BASE_URL CUSTOMER_TOKEN
Exits non-zero with the reason on the first thing that does not hold.
"""
import sys
import time
import uuid

client_dir, base_url, token = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, client_dir)

from orders_client import AuthenticatedClient  # noqa: E402
from orders_client.api.catalog import list_products  # noqa: E402
from orders_client.api.orders import cancel_order, create_order, get_order, list_orders  # noqa: E402
from orders_client.models import CancelBody, CreateOrderRequest, OrderPage, OrderView, Problem  # noqa: E402


def check(ok, what):
    if not ok:
        sys.exit(f"generated client: {what}")


client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)

products = list_products.sync(client=client)
check(isinstance(products, list) and products, f"the catalog lists products: {products!r}")
sku = products[0].sku

body = CreateOrderRequest.from_dict({
    "items": [{"sku": sku, "quantity": 1}],
    "shipping_address": {"street": "1 Main St", "city": "Springfield", "state": "IL",
                         "zip_code": "62701", "country": "US"},
    "payment_method": "credit_card",
    "payment_token": "tok_ok",
})
key = f"generated-client-{uuid.uuid4()}"
placed = create_order.sync_detailed(client=client, body=body, idempotency_key=key)
check(placed.status_code == 201 and isinstance(placed.parsed, OrderView), f"placing answers 201: {placed!r}")
order = placed.parsed
check(isinstance(order.total, str) and "." in order.total, f"money is a decimal string: {order.total!r}")

replay = create_order.sync_detailed(client=client, body=body, idempotency_key=key)
check(replay.status_code == 200 and replay.headers.get("idempotent-replayed") == "true",
      f"a replay answers 200 with Idempotent-Replayed: {replay.status_code} {dict(replay.headers)}")
check(replay.parsed.id == order.id, "the replay is the same order")

read = get_order.sync(client=client, id=str(order.id))
check(isinstance(read, OrderView) and read.id == order.id, f"reading it back: {read!r}")

page = list_orders.sync(client=client, limit=50)
check(isinstance(page, OrderPage) and any(o.id == order.id for o in page.items), "it is listed")

cancelled = cancel_order.sync_detailed(client=client, id=str(order.id), body=CancelBody(reason="changed my mind"))
check(cancelled.status_code in (200, 202), f"cancelling answers 200/202: {cancelled!r}")
deadline = time.monotonic() + 30
while (status := get_order.sync(client=client, id=str(order.id)).status.value) != "cancelled":
    check(time.monotonic() < deadline, f"the order ends cancelled (it is {status})")
    time.sleep(0.2)

missing = get_order.sync_detailed(client=client, id=str(uuid.uuid4()))
check(missing.status_code == 404 and isinstance(missing.parsed, Problem), f"an unknown id is a Problem: {missing!r}")
print(f"generated client: placed, replayed, read, listed and cancelled order {order.id}")
