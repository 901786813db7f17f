-- The system of record for orders. Constraints encode what must never happen:
-- negative stock, two charges (or two refunds) for one order, two reservations
-- for one order line, two events or notifications for one status change.

CREATE TABLE products (
    sku         TEXT PRIMARY KEY CHECK (sku ~ '^[A-Z0-9][A-Z0-9-]{0,63}$'),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    unit_price  NUMERIC(12, 2) NOT NULL CHECK (unit_price >= 0),
    active      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE inventory (
    sku        TEXT PRIMARY KEY REFERENCES products (sku),
    available  INTEGER NOT NULL CHECK (available >= 0),
    reserved   INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id                   UUID PRIMARY KEY,
    customer_id          TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('pending', 'reserved', 'awaiting_review', 'paid', 'shipped',
                                                         'in_transit', 'delivered', 'delivery_overdue', 'failed', 'cancelled')),
    reason               TEXT,
    currency             TEXT NOT NULL DEFAULT 'USD',
    subtotal             NUMERIC(12, 2) NOT NULL CHECK (subtotal >= 0),
    tax                  NUMERIC(12, 2) NOT NULL CHECK (tax >= 0),
    shipping             NUMERIC(12, 2) NOT NULL CHECK (shipping >= 0),
    total                NUMERIC(12, 2) NOT NULL CHECK (total = subtotal + tax + shipping),
    shipping_address     JSONB NOT NULL,
    billing_address      JSONB NOT NULL,
    payment_method       TEXT NOT NULL CHECK (payment_method IN ('credit_card', 'debit_card', 'paypal', 'bank_transfer')),
    -- The PSP token is needed by the charge activity only; it is never returned by the API
    -- and never put into workflow history.
    payment_token        TEXT NOT NULL,
    notes                TEXT,
    idempotency_key      TEXT,
    request_hash         TEXT,
    workflow_id          TEXT NOT NULL UNIQUE,
    -- NULL until Temporal accepted the start; the API's recovery loop starts any order
    -- left NULL (e.g. Temporal was down when the order was accepted).
    workflow_started_at  TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT orders_idempotency_key_key UNIQUE (customer_id, idempotency_key),
    CONSTRAINT orders_idempotency_hash CHECK ((idempotency_key IS NULL) = (request_hash IS NULL))
);
CREATE INDEX orders_customer_created_idx ON orders (customer_id, created_at DESC);
CREATE INDEX orders_unstarted_idx ON orders (created_at) WHERE workflow_started_at IS NULL;

CREATE TABLE order_items (
    order_id    UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no     SMALLINT NOT NULL CHECK (line_no >= 0),
    sku         TEXT NOT NULL REFERENCES products (sku),
    name        TEXT NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    unit_price  NUMERIC(12, 2) NOT NULL CHECK (unit_price >= 0),
    line_total  NUMERIC(12, 2) NOT NULL CHECK (line_total = unit_price * quantity),
    PRIMARY KEY (order_id, line_no),
    UNIQUE (order_id, sku)
);

-- The timeline: one row per status change (and per carrier exception). `key` is the
-- status, or `exception@<time>`; UNIQUE makes a retried step write it once.
CREATE TABLE order_events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id  UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    status    TEXT NOT NULL,
    key       TEXT NOT NULL,
    detail    TEXT,
    at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (order_id, key)
);

-- One reservation per order line; `state` moves held -> released (or held -> consumed when
-- the parcel is handed to the carrier) exactly once, so a retried reserve or release changes nothing.
CREATE TABLE inventory_reservations (
    order_id    UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    sku         TEXT NOT NULL REFERENCES inventory (sku),
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    state       TEXT NOT NULL CHECK (state IN ('held', 'released', 'consumed')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, sku)
);

CREATE TABLE payments (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id            UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    kind                TEXT NOT NULL CHECK (kind IN ('charge', 'refund')),
    idempotency_key     TEXT NOT NULL UNIQUE,
    amount              NUMERIC(12, 2) NOT NULL CHECK (amount > 0),
    status              TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'declined', 'failed')),
    provider_reference  TEXT,
    decline_reason      TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- never two charges (or two refunds) for one order
    CONSTRAINT payments_one_per_kind UNIQUE (order_id, kind),
    CONSTRAINT payments_reference_when_succeeded CHECK (status <> 'succeeded' OR provider_reference IS NOT NULL)
);

CREATE TABLE shipments (
    order_id         UUID PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    carrier          TEXT NOT NULL,
    tracking_number  TEXT NOT NULL UNIQUE,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    cancelled_at     TIMESTAMPTZ
);

-- Outbox: one row per timeline event, written in the same transaction as the event.
-- The order's workflow delivers it on each channel (notification_deliveries).
-- `event_key` is the event's key; the row id is the event id receivers de-duplicate on.
CREATE TABLE notifications (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    event_key   TEXT NOT NULL,
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (order_id, event_key)
);

-- One row per notification and channel once a delivery was attempted; a
-- notification without a `delivered` row for a channel is still due there.
CREATE TABLE notification_deliveries (
    notification_id  BIGINT NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    channel          TEXT NOT NULL CHECK (channel IN ('webhook', 'email')),
    status           TEXT NOT NULL CHECK (status IN ('delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 1,
    last_error       TEXT,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (notification_id, channel)
);
