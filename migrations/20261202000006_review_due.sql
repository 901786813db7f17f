-- When an order held for review is cancelled for want of a decision, recorded by
-- the step that holds it (workflow time + the deadline the order was started
-- with), so a review queue can show the time left. NULL for orders held before.
ALTER TABLE orders ADD COLUMN review_due_at timestamptz;
