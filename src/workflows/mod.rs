//! Deterministic workflow code only: no clock, randomness, env, I/O or
//! hash-map iteration. Workflows depend on `domain` and on activity signatures.

pub mod order;
pub mod user_onboarding;

pub use order::{OrderInput, OrderOutcome, OrderWorkflow};
pub use user_onboarding::{OnboardingInput, UserOnboardingWorkflow, VerifyOutcome};
