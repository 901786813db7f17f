-- Every statement that writes a row re-reads each CHECK constraint of its table from
-- its stored node tree, plans it and compiles it (Postgres does not cache them across
-- statements). An `IN (...)` list is stored as an array constant written out byte by
-- byte, so the value lists were most of that work: orders' eleven checks made each of
-- its writes about 90 µs dearer, five writes per order. A domain's constraint is
-- cached per connection instead, but changing a column to a domain rewrites the table.
-- So each list lives in one small PL/pgSQL function (compiled once per connection,
-- never inlined) and the checks call it. Same names, same values; the lists match
-- the Rust enums, which a test checks value by value (`tests/it/schema.rs`).
--
-- Adding a check reads its table once, under the table's exclusive lock (the whole
-- migration is one transaction), and rewrites nothing.

CREATE FUNCTION order_status_known(value text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value IN ('pending', 'reserved', 'awaiting_review', 'paid', 'shipped', 'in_transit',
                     'delivered', 'delivery_overdue', 'failed', 'cancelled');
END $$;

CREATE FUNCTION stop_reason_known(value text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value IN ('out_of_stock', 'payment_declined', 'payment_failed', 'shipment_failed',
                     'cancel_requested', 'workflow_cancelled', 'review_rejected', 'review_timeout');
END $$;

CREATE FUNCTION payment_method_known(value text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value IN ('credit_card', 'debit_card', 'paypal', 'bank_transfer');
END $$;

CREATE FUNCTION payment_kind_known(value text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value IN ('charge', 'refund');
END $$;

CREATE FUNCTION payment_status_known(value text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value IN ('pending', 'succeeded', 'declined', 'failed');
END $$;

CREATE FUNCTION reservation_state_known(value text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value IN ('held', 'released', 'consumed');
END $$;

-- A NULL reason or stop reason passes, as it did (a CHECK passes on NULL).
ALTER TABLE orders
    DROP CONSTRAINT orders_status_check,
    ADD CONSTRAINT orders_status_check CHECK (order_status_known(status)),
    DROP CONSTRAINT orders_payment_method_check,
    ADD CONSTRAINT orders_payment_method_check CHECK (payment_method_known(payment_method)),
    DROP CONSTRAINT orders_stop_reason_check,
    ADD CONSTRAINT orders_stop_reason_check CHECK (stop_reason_known(stop_reason)),
    DROP CONSTRAINT orders_reason_known,
    ADD CONSTRAINT orders_reason_known CHECK (stop_reason_known(reason));

ALTER TABLE payments
    DROP CONSTRAINT payments_kind_check,
    ADD CONSTRAINT payments_kind_check CHECK (payment_kind_known(kind)),
    DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check CHECK (payment_status_known(status));

ALTER TABLE inventory_reservations
    DROP CONSTRAINT inventory_reservations_state_check,
    ADD CONSTRAINT inventory_reservations_state_check CHECK (reservation_state_known(state));
