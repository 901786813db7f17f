-- Like orders: an account is recorded before its onboarding workflow starts,
-- and the API's recovery loop starts the workflows whose start was never
-- confirmed (Temporal was away), so every account gets its code. Accounts still
-- waiting for one are left unmarked: the loop's start is a no-op for a workflow
-- that exists, and starts the ones an API before this change failed to start.
ALTER TABLE users ADD COLUMN workflow_started_at TIMESTAMPTZ;
UPDATE users SET workflow_started_at = created_at WHERE status <> 'pending_verification';
