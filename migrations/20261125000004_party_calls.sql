-- Calls to an external party (payment gateway, carrier) per order and step.
-- The workflow retries a step for as long as our own database is the trouble;
-- only these calls count against the step's bound on the party's failures.
CREATE TABLE party_calls (
    order_id  UUID NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    step      TEXT NOT NULL,
    calls     INTEGER NOT NULL CHECK (calls > 0),
    PRIMARY KEY (order_id, step)
);
