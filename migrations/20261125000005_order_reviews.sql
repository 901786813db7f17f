-- The first review decision sent for an order (the workflow, too, takes only the
-- first). A retried decision is recognised as a replay, not refused as too late.
CREATE TABLE order_reviews (
    order_id    UUID PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    approve     BOOLEAN NOT NULL,
    note        TEXT,
    decided_by  TEXT NOT NULL,
    decided_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
