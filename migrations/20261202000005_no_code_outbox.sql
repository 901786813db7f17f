-- The verification code was kept in plain text in user_notifications so that a
-- retried send could email the same code; nothing ever sent from that table.
-- Codes are now stored only as an HMAC under ORDERS_VERIFICATION_KEY, and the
-- account emails go straight to SMTP. Accounts that got their code before keep
-- their plain SHA-256 hash, still accepted until their verification deadline
-- (domain::user::legacy_code_hash).
DROP TABLE user_notifications;
