"""The operator console as people use it: Playwright drives Debian's Chromium
(headless, no downloaded browser) against the real API and worker, started by
scripts/contract with the simulated carrier reporting pickup and delivery.

Usage: console_e2e.py API ADMIN_TOKEN ALICE_TOKEN BOB_TOKEN STATE_FILE [no-worker]
  First run: the reviewer, support and customer journeys; writes the id of an
  order left in review to STATE_FILE. With `no-worker` (after scripts/contract
  stopped the worker): the workflow panel says the worker is not running.
  ORDERS_UPDATE_SCREENSHOT=1 writes docs/console-queue.png and docs/console-order.png.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

API, ADMIN, ALICE, BOB, STATE = sys.argv[1:6]
MODE = sys.argv[6] if len(sys.argv) > 6 else "journeys"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = os.environ.get("ORDERS_UPDATE_SCREENSHOT")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENS = [ADMIN, ALICE, BOB]
XSS = '<img src=x onerror="window.__xss=1">'


def call(method, path, token=None, body=None):
    req = urllib.request.Request(API + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("Accept", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def place(token, sku, quantity=1, notes=None):
    body = {
        "items": [{"sku": sku, "quantity": quantity}],
        "shipping_address": {"street": "1 Main St", "city": "Springfield", "state": "IL", "zip_code": "62701", "country": "US"},
        "payment_method": "credit_card",
        "payment_token": "tok_ok",
    }
    if notes:
        body["notes"] = notes
    status, order = call("POST", "/orders", token, body)
    assert status == 201, (status, order)
    return order["id"]


def wait_status(token, order_id, status, within=60):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        _, order = call("GET", f"/orders/{order_id}", token)
        if order and order.get("status") == status:
            return order
        time.sleep(0.1)
    raise AssertionError(f"order {order_id} never reached {status}: {order}")


def available(sku):
    _, products = call("GET", "/products")
    return next(p["available"] for p in products if p["sku"] == sku)


def sign_in(page, token):
    """By keyboard only: the token field has focus, Tab reaches the button, Enter submits."""
    page.goto(f"{API}/console")
    area = page.locator("#token")
    expect(area).to_be_visible()
    area.focus()
    page.keyboard.insert_text(token)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#signout")).to_be_visible()


def no_horizontal_scroll(page):
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"{page.url}: {width}px wide on a {page.viewport_size['width']}px screen"


def journeys(browser):
    urls = []

    def context(width=1280, height=800):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        ctx.on("request", lambda r: urls.append(r.url))
        return ctx

    # 1. Reviewer: a 1,000+ order is in the queue; approved from its page, which
    #    then follows it live (no reload) through paid and shipped to delivered.
    big = place(ALICE, "LAPTOP-6")
    total = wait_status(ALICE, big, "awaiting_review")["total"]
    assert float(total) >= 1000, total
    admin = context().new_page()
    loads = []
    admin.on("load", lambda _: loads.append(admin.url))
    sign_in(admin, ADMIN)
    row = admin.locator("tr", has=admin.locator(f'a[href="#/orders/{big}"]'))
    expect(row).to_be_visible()
    expect(row).to_contain_text(f"{total} USD")
    expect(row).to_contain_text("alice")
    if SCREENSHOTS:
        admin.screenshot(path=os.path.join(ROOT, "docs/console-queue.png"))
    row.locator(f'a[href="#/orders/{big}"]').click()
    expect(admin.locator("#order-status")).to_contain_text("awaiting review")
    # The workflow panel: the pending review deadline, from the Query.
    expect(admin.locator("#workflow-step")).to_have_text("awaiting review")
    expect(admin.locator("#workflow-review-due")).to_contain_text("left")
    if SCREENSHOTS:
        admin.screenshot(path=os.path.join(ROOT, "docs/console-order.png"), full_page=True)
    loads_before = len(loads)
    admin.get_by_role("button", name="Approve").click()
    expect(admin.locator(".answer").first).to_contain_text("202")
    expect(admin.locator("#order-status")).to_contain_text("delivered", timeout=60_000)
    timeline = admin.locator("#timeline").inner_text()
    for status in ["awaiting review", "paid", "shipped", "in transit", "delivered"]:
        assert status in timeline, f"timeline lacks {status}: {timeline}"
    assert len(loads) == loads_before, "the detail page was reloaded"
    expect(admin.get_by_role("button", name="Cancel order")).to_have_count(0)
    print("console: reviewer approved a 1,000+ order and watched it to delivered, live")

    # 2. Reviewer: rejecting from the queue cancels the order and releases its stock.
    before = available("LAPTOP-6")
    rejected = place(ALICE, "LAPTOP-6")
    wait_status(ALICE, rejected, "awaiting_review")
    assert available("LAPTOP-6") == before - 1
    admin.goto(f"{API}/console#/queue")
    row = admin.locator("tr", has=admin.locator(f'a[href="#/orders/{rejected}"]'))
    row.get_by_label(f"Note for {rejected}").fill("card on a watch list")
    row.get_by_role("button", name="Reject").click()
    expect(row).to_contain_text("202")
    order = wait_status(ALICE, rejected, "cancelled")
    assert order["reason"] == "review_rejected", order
    assert available("LAPTOP-6") == before, "stock released on /products"
    admin.goto(f"{API}/console#/orders/{rejected}")
    expect(admin.locator("#order-status")).to_contain_text("review_rejected")
    print("console: reviewer rejected an order; cancelled with review_rejected, stock released")

    # Support: search by customer and status.
    admin.goto(f"{API}/console#/orders")
    admin.get_by_label("Customer").fill("alice")
    admin.get_by_label("Status").select_option("cancelled")
    admin.get_by_role("button", name="Search").click()
    expect(admin.locator(f'a[href="#/orders/{rejected}"]')).to_be_visible()
    expect(admin.locator(f'a[href="#/orders/{big}"]')).to_have_count(0)

    # 3. Customer: own orders only; another's is not found; cancel; a bad ZIP at its field.
    bobs = place(BOB, "WIDGET-1")
    held = place(ALICE, "LAPTOP-6", notes=XSS)
    amended = place(ALICE, "LAPTOP-6")
    for o in (held, amended):
        wait_status(ALICE, o, "awaiting_review")
    alice = context().new_page()
    sign_in(alice, ALICE)
    expect(alice.locator("h1")).to_have_text("My orders")
    expect(alice.locator(f'a[href="#/orders/{held}"]')).to_be_visible()
    expect(alice.locator(f'a[href="#/orders/{bobs}"]')).to_have_count(0)
    alice.goto(f"{API}/console#/orders/{bobs}")
    expect(alice.get_by_role("alert")).to_have_text("Order not found.")

    alice.goto(f"{API}/console#/orders/{held}")
    expect(alice.locator("#order-status")).to_contain_text("awaiting review")
    # 4. The note is text, not markup.
    expect(alice.locator("#notes")).to_have_text(XSS)
    assert alice.locator("#notes img").count() == 0
    assert alice.evaluate("window.__xss") is None
    expect(alice.get_by_role("button", name="Approve")).to_have_count(0)  # reviews are for admins
    alice.get_by_label("Reason").fill("ordered the wrong one")
    alice.get_by_role("button", name="Cancel order").click()
    expect(alice.locator("#order-status")).to_contain_text("cancelled", timeout=30_000)
    expect(alice.locator("#order-status")).to_contain_text("cancel_requested")

    alice.goto(f"{API}/console#/orders/{amended}")
    zip_field = alice.get_by_label("ZIP")
    zip_field.fill("ABCDE")
    alice.get_by_role("button", name="Change address").click()
    error = alice.locator("label", has=zip_field).locator(".field-error")
    expect(error).to_be_visible()
    expect(zip_field).to_have_attribute("aria-invalid", "true")
    expect(alice.locator(".answer.error")).to_contain_text("422")
    print("console: customer sees only own orders, cancels, and sees the ZIP error at its field; a note renders as text")

    # Behind an authenticating proxy (here: the header added to every request, as
    # oauth2-proxy does): no sign-in form, and the console never holds a token.
    proxied = browser.new_context(viewport={"width": 1280, "height": 800},
                                  extra_http_headers={"Authorization": f"Bearer {ADMIN}"}).new_page()
    proxied.goto(f"{API}/console")
    expect(proxied.locator("h1")).to_have_text("Review queue")
    expect(proxied.locator("#token")).to_have_count(0)
    expect(proxied.locator("#signout")).to_be_hidden()
    assert proxied.evaluate("sessionStorage.length") == 0

    # A phone: nothing wider than the screen.
    phone = context(390, 844).new_page()
    sign_in(phone, ADMIN)
    expect(phone.locator("h1")).to_have_text("Review queue")
    no_horizontal_scroll(phone)
    phone.goto(f"{API}/console#/orders/{amended}")
    expect(phone.locator("#order-status")).to_be_visible()
    no_horizontal_scroll(phone)

    leaked = [u for u in urls if any(t in u for t in TOKENS)]
    assert not leaked, f"a token in a URL: {leaked}"
    assert any("/events" in u for u in urls), "the detail page followed the event stream"
    print(f"console: no token in any of {len(urls)} request URLs; fits a 390-px screen")
    with open(STATE, "w") as f:
        f.write(amended)


def no_worker(browser):
    held = open(STATE).read().strip()
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    sign_in(page, ADMIN)
    page.goto(f"{API}/console#/orders/{held}")
    expect(page.locator("#order-status")).to_contain_text("awaiting review")
    expect(page.locator("#workflow-unavailable")).to_contain_text("Worker not running", timeout=15_000)
    print("console: with the worker stopped the order still shows, and the workflow panel says why it cannot")


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    try:
        (no_worker if MODE == "no-worker" else journeys)(browser)
    finally:
        browser.close()
