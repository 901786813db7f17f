-- Postgres decides, the workflow follows. Every decision that races another
-- (a cancel, a review, a carrier report, an amendment, a step's failure, a
-- deadline) is made under the order's row lock against the state machine
-- (src/domain/status.rs) and recorded here before anything acts on it.

-- The order's stop: the first one recorded wins, and the order ends as it says
-- (failed or cancelled, with this reason). `stopped_at` (the fence) came first:
-- a fence without a reason was set by a workflow started before this change.
ALTER TABLE orders
    ADD COLUMN stop_reason TEXT CHECK (stop_reason IN ('out_of_stock', 'payment_declined', 'payment_failed',
                                                      'shipment_failed', 'cancel_requested', 'workflow_cancelled',
                                                      'review_rejected', 'review_timeout')),
    ADD COLUMN stop_detail TEXT,
    ADD CONSTRAINT orders_stop_is_fenced CHECK (stop_reason IS NULL OR stopped_at IS NOT NULL),
    ADD CONSTRAINT orders_reason_known CHECK (reason IN ('out_of_stock', 'payment_declined', 'payment_failed',
                                                         'shipment_failed', 'cancel_requested', 'workflow_cancelled',
                                                         'review_rejected', 'review_timeout')),
    -- Decisions callers made through the API (counted), and how many of them the
    -- order's workflow has been told of by a `decided` signal. The API's recovery
    -- loop signals orders whose count is ahead (Temporal was unreachable).
    ADD COLUMN decisions BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN decisions_signalled BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN decided_at TIMESTAMPTZ;

CREATE INDEX orders_unsignalled_idx ON orders (decided_at) WHERE decisions_signalled < decisions;
