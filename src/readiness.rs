//! The readiness checks both binaries run on `/readyz`, and the log of what
//! they find. A probe asks every few seconds and only hears true or false, so
//! the cause of a failing check (a refused login, a pooler rejecting a startup
//! parameter, a timeout) is logged once when the dependency goes down, and its
//! return once, rather than at every probe or never.
//!
//! `/readyz` answers anyone on the API's port, so a check's outcome is shared:
//! probes that ask within `FRESH_FOR` of a check hear its outcome, and probes
//! that ask while one runs wait for it. However many ask, each process asks
//! each dependency at most once a second (plus the one check that may be
//! running), instead of a query and a Temporal RPC per request.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long one dependency's check may take, whatever it does (connect, then
/// ask): below the probes' `timeoutSeconds` (3) in the Helm chart, so a probe
/// hears 503 from us rather than timing out.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a check's outcome answers the probes that follow it: well under
/// any probe period (the chart's are 5 and 10 s), so a dependency that goes
/// down is reported by the next probe.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// What the last check of the dependencies found, logged when it changes.
pub struct Dependencies {
    pub postgres: Dependency,
    pub temporal: Dependency,
}

impl Default for Dependencies {
    fn default() -> Self {
        Self { postgres: Dependency::new("postgres"), temporal: Dependency::new("temporal") }
    }
}

/// One dependency's last check: up until a check says otherwise.
pub struct Dependency {
    name: &'static str,
    /// When the last check ended and whether the dependency was up (a change
    /// of which is logged; none yet counts as up). Held while
    /// a check runs, so one runs at a time and the probes queued behind it
    /// hear its outcome.
    last: Mutex<Option<(Instant, bool)>>,
}

impl Dependency {
    pub fn new(name: &'static str) -> Self {
        Self { name, last: Mutex::new(None) }
    }

    /// Whether the dependency is up: the outcome of a check that ended within
    /// `FRESH_FOR`, or else of `check`, run now within `CHECK_TIMEOUT` (a
    /// future does nothing until polled, so an unused one costs nothing). A
    /// caller waits at most for the one check before its own.
    pub async fn check<E: Display>(&self, check: impl Future<Output = Result<(), E>>) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, up)) = *last
            && at.elapsed() < FRESH_FOR
        {
            return up;
        }
        let was_up = last.is_none_or(|(_, up)| up);
        let up = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
            Ok(checked) => self.observe(was_up, checked),
            Err(_) => self.observe(was_up, Err(format!("no answer within {CHECK_TIMEOUT:?}"))),
        };
        *last = Some((Instant::now(), up));
        up
    }

    /// Whether a check's outcome says the dependency is up, logging the cause
    /// when it goes down (it `was_up` before) and a line when it comes back.
    fn observe<E: Display>(&self, was_up: bool, checked: Result<(), E>) -> bool {
        match checked {
            Ok(()) => {
                if !was_up {
                    tracing::info!(dependency = self.name, "reachable again");
                }
                true
            }
            Err(e) => {
                if was_up {
                    tracing::warn!(dependency = self.name, error = %e, "unreachable: not ready until it answers");
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Everything logged while `f` runs, one line per event.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber =
            tracing_subscriber::fmt().with_ansi(false).without_time().with_writer(move || writer.clone()).finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = lines.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_failing_check_is_logged_with_its_cause_once_and_its_return_once() {
        let postgres = Dependency::new("postgres");
        let mut answers = Vec::new();
        let lines = logged(|| {
            let mut up = true;
            for checked in [
                Ok(()),
                Err("unsupported startup parameter: extra_float_digits"),
                Err("unsupported startup parameter: extra_float_digits"),
                Err("pool timed out"),
                Ok(()),
                Ok(()),
            ] {
                up = postgres.observe(up, checked);
                answers.push(up);
            }
        });
        assert_eq!(answers, [true, false, false, false, true, true]);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
        assert!(lines[0].contains(r#"dependency="postgres""#), "{}", lines[0]);
        assert!(lines[0].contains("unsupported startup parameter: extra_float_digits"), "{}", lines[0]);
        assert!(lines[1].contains("INFO") && lines[1].contains("reachable again"), "{}", lines[1]);
    }

    /// A check that counts its runs and answers `up`.
    async fn counted(runs: &AtomicUsize, up: bool) -> Result<(), &'static str> {
        runs.fetch_add(1, Ordering::SeqCst);
        if up { Ok(()) } else { Err("refused") }
    }

    #[tokio::test(start_paused = true)]
    async fn probes_within_a_second_of_a_check_share_its_outcome() {
        let temporal = Dependency::new("temporal");
        let runs = AtomicUsize::new(0);
        assert!(temporal.check(counted(&runs, true)).await);
        // The dependency went down, but within FRESH_FOR the last outcome stands.
        for _ in 0..100 {
            assert!(temporal.check(counted(&runs, false)).await);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one check answered them all");
        tokio::time::advance(FRESH_FOR).await;
        assert!(!temporal.check(counted(&runs, false)).await, "the next probe after FRESH_FOR checks again");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn probes_that_arrive_during_a_check_wait_for_it_rather_than_start_their_own() {
        let postgres = Arc::new(Dependency::new("postgres"));
        let runs = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(tokio::sync::Notify::new());
        let mut probes = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (postgres, runs, answer) = (postgres.clone(), runs.clone(), answer.clone());
            probes.spawn(async move {
                postgres
                    .check(async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        answer.notified().await;
                        Ok::<(), &str>(())
                    })
                    .await
            });
        }
        // Every probe is either running the check or queued behind it.
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        answer.notify_waiters();
        let mut answers = Vec::new();
        while let Some(up) = probes.join_next().await {
            answers.push(up.unwrap());
        }
        assert_eq!(answers, vec![true; 50]);
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one check for fifty probes");
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_without_an_answer_is_down_after_the_timeout_and_then_shared() {
        let postgres = Dependency::new("postgres");
        let runs = AtomicUsize::new(0);
        let hung = async {
            runs.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<(), &str>>().await
        };
        let started = Instant::now();
        assert!(!postgres.check(hung).await);
        assert_eq!(started.elapsed(), CHECK_TIMEOUT);
        assert!(!postgres.check(counted(&runs, true)).await, "a timed-out check is an outcome like any other");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
