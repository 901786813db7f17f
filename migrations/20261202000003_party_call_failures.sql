-- A step's bound counts the party's failures, not its calls: a call is counted
-- before it is made (so a call whose answer was lost counts as "the party may
-- have it"), but our own database failing between that count and the call
-- made no call at all, and must not use up the party's bound. `failures` is
-- the transient answers the party gave.
ALTER TABLE party_calls ADD COLUMN failures INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0);
