//! The one retry policy of every load step that can fail transiently: job parts, migrations and
//! sink batches. Exponential backoff from a base wait, doubled per attempt and capped, with up to
//! 25 % jitter (so parallel units that failed together do not retry together), never shorter
//! than what the other side asked for (`Retry-After`), and cut short by cancellation.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The longest wait between two attempts, whatever the base and the attempt.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// How an operation is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before the first retry; doubled for each later one.
    pub base: Duration,
    /// The longest wait ([`MAX_RETRY_WAIT`] unless set).
    pub cap: Duration,
}

/// What a failed attempt says about the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Worth another attempt, after at least this long when the other side said so.
    Retry(Option<Duration>),
    /// Will fail again: stop.
    GiveUp,
}

/// How a retried operation ended.
#[derive(Debug)]
pub struct Retried<T, E> {
    /// The last attempt's result.
    pub result: Result<T, E>,
    /// Attempts made.
    pub attempts: u32,
    /// Cancellation cut a wait short (the result is the last error).
    pub cancelled: bool,
}

impl RetryPolicy {
    /// `max_attempts` attempts, waiting `base`, `2 × base`, … (capped at [`MAX_RETRY_WAIT`]).
    pub fn new(max_attempts: u32, base: Duration) -> Self {
        Self {
            max_attempts,
            base,
            cap: MAX_RETRY_WAIT,
        }
    }

    /// The wait after failed attempt `attempt` (1-based): `base × 2^(attempt-1)` plus up to 25 %
    /// jitter, capped, and at least `asked`.
    pub fn wait(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        let doubled = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20)));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let jittered = doubled + doubled.mul_f64(f64::from(nanos % 250) / 1000.0);
        jittered.min(self.cap).max(asked.unwrap_or_default())
    }

    /// Runs `attempt` until it succeeds, `verdict` gives up on its error, the attempts run out,
    /// or `cancel` fires during a wait. `on_retry` hears of each retry (attempt number, error,
    /// wait) before the wait, for logging.
    pub async fn run<T, E, F, Fut>(
        &self,
        cancel: &CancellationToken,
        mut attempt: F,
        verdict: impl Fn(&E) -> Verdict,
        mut on_retry: impl FnMut(u32, &E, Duration),
    ) -> Retried<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match attempt().await {
                Ok(value) => {
                    return Retried {
                        result: Ok(value),
                        attempts,
                        cancelled: false,
                    };
                }
                Err(error) => error,
            };
            let asked = match verdict(&error) {
                Verdict::Retry(asked) if attempts < self.max_attempts.max(1) => asked,
                _ => {
                    return Retried {
                        result: Err(error),
                        attempts,
                        cancelled: false,
                    };
                }
            };
            let wait = self.wait(attempts, asked);
            on_retry(attempts, &error, wait);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => {
                    return Retried { result: Err(error), attempts, cancelled: true };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_up_to_the_cap_and_honour_what_was_asked() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for (attempt, low) in [(1, 100), (2, 200), (3, 400)] {
            let wait = policy.wait(attempt, None);
            let low = Duration::from_millis(low);
            assert!(wait >= low && wait <= low.mul_f64(1.25), "attempt {attempt}: {wait:?}");
        }
        assert_eq!(policy.wait(9, None), Duration::from_secs(1));
        assert_eq!(policy.wait(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_the_attempts_run_out_and_others_stop_at_once() {
        let policy = RetryPolicy::new(3, Duration::from_millis(1));
        let cancel = CancellationToken::new();
        let mut calls = 0;
        let retried: Retried<(), &str> = policy
            .run(
                &cancel,
                || {
                    calls += 1;
                    async { Err("flaky") }
                },
                |_| Verdict::Retry(None),
                |_, _, _| {},
            )
            .await;
        assert_eq!((retried.attempts, retried.cancelled, calls), (3, false, 3));
        let stopped: Retried<(), &str> = policy
            .run(&cancel, || async { Err("bad") }, |_| Verdict::GiveUp, |_, _, _| {})
            .await;
        assert_eq!(stopped.attempts, 1);
        cancel.cancel();
        let cancelled: Retried<(), &str> = RetryPolicy::new(5, Duration::from_secs(30))
            .run(
                &cancel,
                || async { Err("flaky") },
                |_| Verdict::Retry(None),
                |_, _, _| {},
            )
            .await;
        assert!(cancelled.cancelled && cancelled.attempts == 1);
    }
}
