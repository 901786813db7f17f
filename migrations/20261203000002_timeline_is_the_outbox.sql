-- The timeline is the outbox. Every timeline event was copied into `notifications`
-- in the same statement (its type `order.<status>` and payload follow from the event),
-- an insert, two index entries and a foreign-key check per event that nothing needed.
-- Notifications are now read from `order_events` (the event id is the notification id
-- receivers de-duplicate on, as in the live-event stream), and deliveries are kept per
-- event and channel. Deliveries recorded so far move over; a notification still due
-- when this runs goes out with its event's id instead of its old outbox id.
CREATE TABLE event_deliveries (
    event_id    BIGINT NOT NULL REFERENCES order_events (id) ON DELETE CASCADE,
    channel     TEXT NOT NULL CHECK (channel IN ('webhook', 'email')),
    status      TEXT NOT NULL CHECK (status IN ('delivered', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 1,
    last_error  TEXT,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, channel)
);

INSERT INTO event_deliveries (event_id, channel, status, attempts, last_error, updated_at)
SELECT e.id, d.channel, d.status, d.attempts, d.last_error, d.updated_at
  FROM notification_deliveries d
  JOIN notifications n ON n.id = d.notification_id
  JOIN order_events e ON e.order_id = n.order_id AND e.key = n.event_key;

DROP TABLE notification_deliveries;
DROP TABLE notifications;
