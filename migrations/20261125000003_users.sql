-- Customer accounts and their onboarding (UserOnboardingWorkflow).
CREATE TABLE users (
    id                  UUID PRIMARY KEY,
    email               TEXT NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    name                TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    status              TEXT NOT NULL CHECK (status IN ('pending_verification', 'active', 'locked', 'expired')),
    -- SHA-256 of the current verification code; never the code itself.
    code_hash           TEXT,
    failed_attempts     INTEGER NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Addresses are unique whatever their case.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- Outbox for account emails (the verification code, the welcome), one per kind.
CREATE TABLE user_notifications (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    payload     JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, kind)
);
