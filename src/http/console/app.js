// The operator console: plain DOM, no framework, no build step. Every request
// goes to this API's public endpoints; every piece of data is inserted as text
// (never as HTML), so an order note or street cannot run as markup.

const TOKEN_KEY = "orders.token"; // sessionStorage only: gone with the tab, never in a URL
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signout = document.getElementById("signout");

let identity = null; // {subject, role} from GET /whoami
let stopLive = () => {}; // closes the detail page's event stream

// ---- DOM ----

/** An element with attributes, listeners (`on*`) and children (strings become text nodes). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let viewSeq = 0;

/**
 * A new page: its `show` renders only while it is still the current page, so
 * an answer that arrives after the user moved on cannot overwrite the new one.
 */
function newView() {
  const mine = ++viewSeq;
  const current = () => mine === viewSeq;
  return { current, show: (...nodes) => current() && main.replaceChildren(...nodes) };
}

const statusBadge = (s) => h("span", { class: `status ${s}` }, s.replaceAll("_", " "));
const when = (t) => (t ? new Date(t).toLocaleString() : "—");
const orderLink = (id) => h("a", { href: `#/orders/${id}` }, id);

function timeLeft(due) {
  if (!due) return "—";
  const ms = new Date(due) - Date.now();
  if (ms <= 0) return "due now";
  const m = Math.round(ms / 60000);
  return m < 120 ? `${m} min` : `${Math.round(m / 60)} h`;
}

// ---- API ----

/** Calls the API; resolves to {status, body} (a problem's body for errors), never throws on HTTP errors. */
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    return { status: 0, body: { title: "Network error", detail: "the API did not answer; check the connection" } };
  }
  const text = await resp.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch (e) {
    parsed = { detail: text };
  }
  if (resp.status === 401 && path !== "/whoami") signIn("Your token was refused or has expired; sign in again.");
  return { status: resp.status, body: parsed };
}

/** A plain statement of an answer: the status, and for a problem its title, detail and field errors. */
function answer(res, ok) {
  const good = res.status >= 200 && res.status < 300;
  const text = good ? `${res.status} — ${ok}` : `${res.status || "no answer"} — ${res.body?.title ?? "Error"}: ${res.body?.detail ?? ""}`;
  return h("div", { class: good ? "answer" : "answer error", role: good ? "status" : "alert" }, text);
}

/** Shows each field error of a 422 next to its input (`data-pointer`), and clears the old ones. */
function fieldErrors(form, res) {
  form.querySelectorAll(".field-error").forEach((e) => e.remove());
  for (const err of res.body?.errors ?? []) {
    const input = form.querySelector(`[data-pointer="${CSS.escape(err.pointer)}"]`);
    const msg = h("span", { class: "field-error", id: `err-${err.pointer.slice(1)}` }, err.message);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", msg.id);
      input.closest("label").append(msg);
    }
  }
}

// ---- sign-in ----

function signIn(message) {
  const { show } = newView();
  stopLive();
  identity = null;
  sessionStorage.removeItem(TOKEN_KEY);
  renderChrome();
  const area = h("textarea", { id: "token", name: "token", required: true, autocomplete: "off", spellcheck: "false" });
  const form = h(
    "form",
    {
      onsubmit: async (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, area.value.trim());
        if (!(await whoami())) signIn("That token was refused: check it is current and signed for this API.");
        else route();
      },
    },
    h("label", { for: "token" }, "Bearer token (kept in this tab only)"),
    area,
    h("p", {}, h("button", { type: "submit" }, "Sign in")),
  );
  show(
    h("h1", {}, "Sign in"),
    message ? h("div", { class: "answer error", role: "alert" }, message) : null,
    h("section", { class: "card" }, form,
      h("p", { class: "muted" }, "Behind an authenticating proxy that adds the token, this page does not appear.")),
  );
}

async function whoami() {
  const res = await api("GET", "/whoami");
  identity = res.status === 200 ? res.body : null;
  renderChrome();
  return identity;
}

function renderChrome() {
  const links = !identity
    ? []
    : identity.role === "admin"
      ? [["#/queue", "Review queue"], ["#/orders", "Orders"]]
      : [["#/orders", "My orders"]];
  nav.replaceChildren(
    ...links.map(([href, text]) =>
      h("a", { href, "aria-current": location.hash.startsWith(href) ? "page" : null }, text)),
  );
  who.textContent = identity ? `${identity.subject} (${identity.role})` : "";
  signout.hidden = !identity || !sessionStorage.getItem(TOKEN_KEY);
}

signout.addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = "#/";
  signIn("Signed out.");
});

// ---- review queue (admins) ----

async function queue(view = newView()) {
  const { show } = view;
  show(h("h1", {}, "Review queue"), h("p", { class: "loading" }, "Loading…"));
  const res = await api("GET", "/orders?status=awaiting_review&order=oldest&limit=100");
  if (res.status !== 200) return show(h("h1", {}, "Review queue"), answer(res));
  const rows = res.body.items.map((o) => {
    const note = h("input", { type: "text", name: "note", maxlength: 500, placeholder: "note", "aria-label": `Note for ${o.id}` });
    const result = h("div", {});
    const decide = (decision) => async (ev) => {
      const buttons = ev.target.parentElement.querySelectorAll("button");
      buttons.forEach((b) => (b.disabled = true));
      const body = { decision };
      if (note.value.trim()) body.note = note.value.trim();
      const r = await api("POST", `/orders/${o.id}/review`, body);
      result.replaceChildren(answer(r, decision === "approve" ? "approved: the order goes on to the charge" : "rejected: the order is cancelled and compensated"));
      buttons.forEach((b) => (b.disabled = false));
    };
    return h("tr", {},
      h("td", {}, orderLink(o.id)),
      h("td", {}, o.customer_id),
      h("td", { class: "num" }, `${o.total} ${o.currency}`),
      h("td", { class: "hide-narrow" }, when(o.created_at)),
      h("td", {}, timeLeft(o.review_due_at)),
      h("td", {},
        h("div", { class: "row-actions" }, note,
          h("button", { type: "button", onclick: decide("approve") }, "Approve"),
          h("button", { type: "button", class: "danger", onclick: decide("reject") }, "Reject")),
        result),
    );
  });
  show(
    h("h1", {}, "Review queue"),
    h("p", { class: "muted" }, "Orders held for a manual review, oldest first. No decision by the deadline cancels the order."),
    h("p", {}, h("button", { type: "button", class: "secondary", onclick: () => queue() }, "Refresh")),
    rows.length
      ? h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, h("th", {}, "Order"), h("th", {}, "Customer"), h("th", { class: "num" }, "Total"),
            h("th", { class: "hide-narrow" }, "Placed"), h("th", {}, "Time left"), h("th", {}, "Decision"))),
          h("tbody", {}, rows)))
      : h("p", {}, "Nothing waits for a review."),
  );
}

// ---- order search ----

const STATUSES = ["pending", "reserved", "awaiting_review", "paid", "shipped", "in_transit", "delivered", "delivery_overdue", "failed", "cancelled"];

async function orders(view, params) {
  const { show } = view;
  const admin = identity.role === "admin";
  const field = (name, label, attrs = {}) =>
    h("label", {}, label, h("input", { name, value: params.get(name) ?? "", "data-pointer": `/${name}`, ...attrs }));
  const form = h("form", {
      class: "grid",
      onsubmit: (ev) => {
        ev.preventDefault();
        const data = new FormData(form);
        const id = String(data.get("id") ?? "").trim();
        if (id) return (location.hash = `#/orders/${encodeURIComponent(id)}`);
        const q = new URLSearchParams();
        for (const [k, v] of data) {
          if (!v || k === "id") continue;
          q.set(k, k.startsWith("created_") ? new Date(v).toISOString() : v);
        }
        location.hash = `#/orders?${q}`;
      },
    },
    field("id", "Order id"),
    admin ? field("customer_id", "Customer") : null,
    h("label", {}, "Status", h("select", { name: "status", "data-pointer": "/status" },
      h("option", { value: "" }, "any"),
      STATUSES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s.replaceAll("_", " "))))),
    field("created_after", "Placed after", { type: "datetime-local", value: localInput(params.get("created_after")) }),
    field("created_before", "Placed before", { type: "datetime-local", value: localInput(params.get("created_before")) }),
    h("button", { type: "submit" }, "Search"),
  );
  const results = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  show(h("h1", {}, admin ? "Orders" : "My orders"), h("section", { class: "card" }, form), results);

  const q = new URLSearchParams(params);
  q.set("limit", "25");
  const res = await api("GET", `/orders?${q}`);
  if (res.status !== 200) {
    fieldErrors(form, res);
    return results.replaceChildren(answer(res));
  }
  const page = res.body;
  const next = page.next_cursor
    ? h("p", {}, h("a", { href: `#/orders?${withCursor(params, page.next_cursor)}` }, "Next page →"))
    : null;
  results.replaceChildren(
    page.items.length
      ? h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, h("th", {}, "Order"), admin ? h("th", {}, "Customer") : null, h("th", {}, "Status"),
            h("th", { class: "num" }, "Total"), h("th", { class: "hide-narrow" }, "Placed"))),
          h("tbody", {}, page.items.map((o) => h("tr", {},
            h("td", {}, orderLink(o.id)), admin ? h("td", {}, o.customer_id) : null, h("td", {}, statusBadge(o.status)),
            h("td", { class: "num" }, `${o.total} ${o.currency}`), h("td", { class: "hide-narrow" }, when(o.created_at)))))))
      : h("p", {}, "No orders match."),
    next,
  );
}

function withCursor(params, cursor) {
  const q = new URLSearchParams(params);
  q.set("cursor", cursor);
  return q;
}

function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

// ---- one order, live ----

async function detail(view, id) {
  const { show, current } = view;
  const title = h("h1", {}, "Order ", h("code", {}, id));
  const live = h("span", { class: "live" }, "");
  const body = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  const actions = h("div", {});
  // Answers to this page's actions: outside the action forms, which are
  // replaced when the order moves on (often right after the answer).
  const out = h("div", { id: "answer" });
  const panel = identity.role === "admin" ? h("section", { class: "card", "aria-label": "Workflow" }) : null;
  show(title, live, out, body, actions, panel);

  let order = null;
  const reload = async () => {
    const res = await api("GET", `/orders/${encodeURIComponent(id)}`);
    if (res.status === 404) {
      stopLive();
      body.replaceChildren(h("div", { class: "answer error", role: "alert" }, "Order not found."));
      actions.replaceChildren();
      panel?.remove();
      return null;
    }
    if (res.status !== 200) return body.replaceChildren(answer(res));
    order = res.body;
    body.replaceChildren(renderOrder(order));
    renderActions(actions, order, out, reload);
    if (panel) workflowPanel(panel, id);
    return order;
  };
  if (!(await reload()) || !current()) return;
  stopLive = follow(id, live, reload);
}

function renderOrder(o) {
  const addr = (a) => [a.street, `${a.city}, ${a.state} ${a.zip_code}`, a.country].map((l) => h("div", {}, l));
  return h("div", {},
    h("p", { id: "order-status" }, statusBadge(o.status), o.reason ? h("span", { class: "muted" }, ` reason: ${o.reason}`) : null,
      o.review_due_at ? h("span", { class: "muted" }, ` — review due ${when(o.review_due_at)} (${timeLeft(o.review_due_at)} left)`) : null),
    h("div", { class: "cols" },
      h("section", { class: "card" }, h("h2", {}, "Lines"),
        h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, h("th", {}, "SKU"), h("th", {}, "Item"), h("th", { class: "num" }, "Qty"), h("th", { class: "num" }, "Line"))),
          h("tbody", {}, o.items.map((i) => h("tr", {}, h("td", {}, i.sku), h("td", {}, i.name), h("td", { class: "num" }, i.quantity), h("td", { class: "num" }, i.line_total)))))),
        h("dl", { class: "kv" },
          h("dt", {}, "Subtotal"), h("dd", {}, o.subtotal), h("dt", {}, "Tax"), h("dd", {}, o.tax),
          h("dt", {}, "Shipping"), h("dd", {}, o.shipping), h("dt", {}, "Total"), h("dd", {}, h("strong", {}, `${o.total} ${o.currency}`)))),
      h("section", { class: "card" }, h("h2", {}, "Customer & payment"),
        h("dl", { class: "kv" },
          h("dt", {}, "Customer"), h("dd", {}, o.customer_id),
          h("dt", {}, "Payment"), h("dd", { id: "payment-status" }, `${o.payment.status} (${o.payment.method})`),
          o.payment.provider_reference ? [h("dt", {}, "Reference"), h("dd", {}, o.payment.provider_reference)] : null,
          h("dt", {}, "Shipment"), h("dd", {}, o.shipment ? `${o.shipment.carrier} ${o.shipment.tracking_number}` : "not booked"),
          h("dt", {}, "Placed"), h("dd", {}, when(o.created_at)),
          h("dt", {}, "Notes"), h("dd", { id: "notes" }, o.notes ?? "—"))),
      h("section", { class: "card" }, h("h2", {}, "Ship to"), h("div", { id: "shipping-address" }, addr(o.shipping_address)))),
    h("section", { class: "card" }, h("h2", {}, "Timeline"),
      h("ol", { class: "timeline", id: "timeline" }, o.timeline.map((e) =>
        h("li", {}, statusBadge(e.status), " ", h("span", { class: "muted" }, when(e.at)), e.detail ? ` — ${e.detail}` : "")))),
  );
}

/** The buttons the order admits now (its `actions`, from the state machine) and the caller's role allows. */
function renderActions(box, o, out, reload) {
  const can = (a) => o.actions.includes(a);
  const parts = [];
  if (can("review") && identity.role === "admin") {
    const note = h("input", { type: "text", name: "note", maxlength: 500, "aria-label": "Review note" });
    const decide = (decision) => async () => {
      const body = { decision };
      if (note.value.trim()) body.note = note.value.trim();
      const r = await api("POST", `/orders/${o.id}/review`, body);
      out.replaceChildren(answer(r, decision === "approve" ? "approved" : "rejected"));
    };
    parts.push(h("section", { class: "card" }, h("h2", {}, "Review"),
      h("div", { class: "row-actions" }, h("label", {}, "Note", note),
        h("button", { type: "button", onclick: decide("approve") }, "Approve"),
        h("button", { type: "button", class: "danger", onclick: decide("reject") }, "Reject"))));
  }
  if (can("cancel")) {
    const reason = h("input", { type: "text", name: "reason", required: true, maxlength: 500, "data-pointer": "/reason" });
    const form = h("form", {
        onsubmit: async (ev) => {
          ev.preventDefault();
          const r = await api("POST", `/orders/${o.id}/cancel`, { reason: reason.value });
          fieldErrors(form, r);
          out.replaceChildren(answer(r, r.status === 200 ? "cancelled and compensated" : "cancel recorded; compensation running"));
        },
      },
      h("div", { class: "row-actions" }, h("label", {}, "Reason", reason), h("button", { type: "submit", class: "danger" }, "Cancel order")));
    parts.push(h("section", { class: "card" }, h("h2", {}, "Cancel"), form));
  }
  if (can("amend_address") && !o.shipment) {
    const a = o.shipping_address;
    const input = (name, label, value) =>
      h("label", {}, label, h("input", { name, value, required: true, "data-pointer": `/${name}` }));
    const form = h("form", {
        class: "grid",
        onsubmit: async (ev) => {
          ev.preventDefault();
          const r = await api("PATCH", `/orders/${o.id}/shipping-address`, Object.fromEntries(new FormData(form)));
          fieldErrors(form, r);
          out.replaceChildren(answer(r, "address changed"));
          if (r.status === 200) reload();
        },
      },
      input("street", "Street", a.street), input("city", "City", a.city), input("state", "State", a.state),
      input("zip_code", "ZIP", a.zip_code), input("country", "Country", a.country),
      h("button", { type: "submit" }, "Change address"));
    parts.push(h("section", { class: "card" }, h("h2", {}, "Shipping address"), form));
  }
  // Keep forms being typed into: replace only when what is offered changed.
  const key = `${o.actions.join()}|${!!o.shipment}`;
  if (box.dataset.key !== key) {
    box.dataset.key = key;
    box.replaceChildren(...parts);
  }
}

async function workflowPanel(panel, id) {
  const res = await api("GET", `/orders/${encodeURIComponent(id)}/workflow`);
  const head = h("h2", {}, "Workflow");
  if (res.status === 503) {
    return panel.replaceChildren(head, h("div", { class: "answer error", id: "workflow-unavailable", role: "alert" },
      `Worker not running — ${res.body?.detail ?? "the workflow did not answer"}`));
  }
  if (res.status !== 200) return panel.replaceChildren(head, answer(res));
  const w = res.body;
  const l = w.live;
  const consistency = { agrees: "agrees with the read model", catching_up: "catching up with the read model", disagrees: "DISAGREES with the read model" }[w.consistency];
  panel.replaceChildren(head, h("dl", { class: "kv", id: "workflow" },
    h("dt", {}, "Workflow"), h("dd", {}, w.web_ui_url ? h("a", { href: w.web_ui_url, target: "_blank", rel: "noopener" }, w.workflow_id) : w.workflow_id),
    h("dt", {}, "Step"), h("dd", { id: "workflow-step" }, l.step.replaceAll("_", " ")),
    h("dt", {}, "Status"), h("dd", {}, `${l.status} — ${consistency}`),
    h("dt", {}, "Review due"), h("dd", { id: "workflow-review-due" }, l.review_due_at ? `${when(l.review_due_at)} (${timeLeft(l.review_due_at)} left)` : "—"),
    h("dt", {}, "Delivery due"), h("dd", {}, when(l.delivery_due_at)),
    h("dt", {}, "Address"), h("dd", {}, l.address_locked ? "locked (booking begun)" : "may change"),
    h("dt", {}, "Webhooks"), h("dd", {}, `${l.deliveries.webhook.delivered} delivered, ${l.deliveries.webhook.failed_batches} failed batches`),
    h("dt", {}, "Email"), h("dd", {}, `${l.deliveries.email.delivered} delivered, ${l.deliveries.email.failed_batches} failed batches`)));
}

/**
 * Follows GET /orders/{id}/events. EventSource cannot send an Authorization
 * header (and a token in the URL would be logged), so the stream is read with
 * fetch; it resumes with Last-Event-ID and ends when the order does.
 */
function follow(id, indicator, onEvent) {
  const ctrl = new AbortController();
  let last = null;
  let timer = null;
  const run = async () => {
    const headers = { Accept: "text/event-stream" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (last) headers["Last-Event-ID"] = last;
    try {
      const resp = await fetch(`/orders/${encodeURIComponent(id)}/events`, { headers, signal: ctrl.signal });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      indicator.className = "live on";
      indicator.textContent = "live";
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const idLine = block.split("\n").find((l) => l.startsWith("id:"));
          if (idLine) last = idLine.slice(3).trim();
          if (block.split("\n").some((l) => l.startsWith("data:"))) onEvent();
        }
      }
      // The server ends the stream when the order has ended.
      const o = await onEvent();
      if (o && o.actions.length === 0) {
        indicator.className = "live";
        indicator.textContent = "ended";
        return;
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
      indicator.className = "live";
      indicator.textContent = "reconnecting…";
    }
    if (!ctrl.signal.aborted) timer = setTimeout(run, 1000);
  };
  run();
  return () => {
    ctrl.abort();
    clearTimeout(timer);
  };
}

// ---- routing ----

async function route() {
  stopLive();
  stopLive = () => {};
  if (!identity) return;
  renderChrome();
  const [path, query] = location.hash.slice(1).split("?");
  const params = new URLSearchParams(query ?? "");
  const m = path.match(/^\/orders\/([^/]+)$/);
  if (m) return detail(newView(), decodeURIComponent(m[1]));
  if (path === "/orders") return orders(newView(), params);
  if (path === "/queue" && identity.role === "admin") return queue(newView());
  location.hash = identity.role === "admin" ? "#/queue" : "#/orders";
}

window.addEventListener("hashchange", route);

(async () => {
  // Behind an authenticating proxy the token is added on the way: no sign-in.
  if (await whoami()) route();
  else signIn(sessionStorage.getItem(TOKEN_KEY) ? "Your token was refused or has expired; sign in again." : null);
})();
