-- When the order's compensation began. From then on no forward step (reserve,
-- charge, book) acts on the order: a step attempt still running for a run that
-- Temporal has already retried elsewhere (a "zombie" local activity) finds this
-- under the order's row lock and calls no party. Compensation sets it under the
-- same lock, so it waits for a party call in flight and then sees its outcome.
ALTER TABLE orders ADD COLUMN stopped_at TIMESTAMPTZ;
