-- A compensation the party refuses for good (a refund the gateway rejects, a
-- booking the carrier will not cancel) is recorded rather than retried for
-- ever: the order still ends, its stock is released, and an operator settles
-- the rest by hand. A refused refund is the refund row with status 'failed'
-- (the reason in decline_reason); a refused cancellation is recorded here.
ALTER TABLE shipments ADD COLUMN cancel_refused TEXT;
