//! Deterministic workflow code only: no clock, randomness, env, I/O or
//! hash-map iteration. Workflows depend on `domain` and on activity signatures.

pub mod order;

pub use order::{OrderInput, OrderOutcome, OrderWorkflow};
