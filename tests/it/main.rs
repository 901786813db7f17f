//! Integration tests against a real Postgres and a real Temporal dev server
//! (started by `scripts/test`, which exports ORDERS_TEST_DATABASE_URL and
//! ORDERS_TEST_TEMPORAL_ADDRESS). Each test gets its own database and task queue.

mod abuse;
mod activities;
mod api;
mod console;
mod contract;
mod decisions;
mod e2e;
mod email;
mod events;
mod faults;
mod idp;
mod invariants;
mod lifecycle;
mod listing;
mod parties;
mod races;
mod schema;
mod support;
mod users;
mod webhooks;
mod workflow;
