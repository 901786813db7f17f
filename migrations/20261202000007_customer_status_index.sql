-- GET /orders?customer_id=…&status=… (a customer's open orders, a support
-- search): exact, newest or oldest first, instead of reading every order of the
-- customer and filtering by status. Takes a write lock on orders while it builds
-- (sqlx runs each migration in a transaction, so not CONCURRENTLY): on a large
-- table, create it CONCURRENTLY by hand first; IF NOT EXISTS then skips it here.
CREATE INDEX IF NOT EXISTS orders_customer_status_id_idx ON orders (customer_id, status, id);
