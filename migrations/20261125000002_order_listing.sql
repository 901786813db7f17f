-- GET /orders pages newest first (ORDER BY id DESC: ids are UUIDv7), filtered by
-- customer and/or status.
DROP INDEX orders_customer_created_idx;
CREATE INDEX orders_customer_id_idx ON orders (customer_id, id DESC);
CREATE INDEX orders_status_id_idx ON orders (status, id DESC);
