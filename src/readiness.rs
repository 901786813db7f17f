//! The readiness checks both binaries run on `/readyz`, and the log of what
//! they find. A probe asks every few seconds and only hears true or false, so
//! the cause of a failing check (a refused login, a pooler rejecting a startup
//! parameter, a timeout) is logged once when the dependency goes down, and its
//! return once, rather than at every probe or never.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long one dependency's check may take, whatever it does (connect, then
/// ask): below the probes' `timeoutSeconds` (3) in the Helm chart, so a probe
/// hears 503 from us rather than timing out.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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
    down: AtomicBool,
}

impl Dependency {
    pub fn new(name: &'static str) -> Self {
        Self { name, down: AtomicBool::new(false) }
    }

    /// Runs `check` within `CHECK_TIMEOUT` and records its outcome: whether the
    /// dependency is up.
    pub async fn check<E: Display>(&self, check: impl Future<Output = Result<(), E>>) -> bool {
        match tokio::time::timeout(CHECK_TIMEOUT, check).await {
            Ok(checked) => self.observe(checked),
            Err(_) => self.observe(Err(format!("no answer within {CHECK_TIMEOUT:?}"))),
        }
    }

    /// Records a check's outcome and returns whether the dependency is up,
    /// logging the cause when it goes down and a line when it comes back.
    fn observe<E: Display>(&self, checked: Result<(), E>) -> bool {
        match checked {
            Ok(()) => {
                if self.down.swap(false, Ordering::SeqCst) {
                    tracing::info!(dependency = self.name, "reachable again");
                }
                true
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::SeqCst) {
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
            answers.push(postgres.observe(Ok::<(), &str>(())));
            answers.push(postgres.observe(Err("unsupported startup parameter: extra_float_digits")));
            answers.push(postgres.observe(Err("unsupported startup parameter: extra_float_digits")));
            answers.push(postgres.observe(Err("pool timed out")));
            answers.push(postgres.observe(Ok::<(), &str>(())));
            answers.push(postgres.observe(Ok::<(), &str>(())));
        });
        assert_eq!(answers, [true, false, false, false, true, true]);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("WARN"), "{}", lines[0]);
        assert!(lines[0].contains(r#"dependency="postgres""#), "{}", lines[0]);
        assert!(lines[0].contains("unsupported startup parameter: extra_float_digits"), "{}", lines[0]);
        assert!(lines[1].contains("INFO") && lines[1].contains("reachable again"), "{}", lines[1]);
    }
}
