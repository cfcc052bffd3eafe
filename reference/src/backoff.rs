//! Capped exponential backoff with jitter for every reconnect loop: never a busy loop, never a
//! crash loop.

use std::{fmt::Display, future::Future, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};

const MIN_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(10);

fn builder() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .with_jitter()
}

/// Retries `attempt` until it succeeds or `timeout` has been spent waiting, logging each failure.
/// A zero timeout tries once.
pub async fn retry_for<T, E, F, Fut>(timeout: Duration, what: &str, attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let policy = builder()
        .without_max_times()
        .with_total_delay(Some(timeout));
    attempt
        .retry(policy)
        .sleep(tokio::time::sleep)
        .notify(|err, wait| tracing::warn!(error = %err, retry_in = ?wait, "{what} unreachable; retrying"))
        .await
}

/// Delays for a loop that reconnects forever: 100 ms doubling to 10 s, with jitter.
/// Call [`Reconnect::reset`] after a success so the next outage starts fast again.
#[derive(Debug)]
pub struct Reconnect {
    delays: backon::ExponentialBackoff,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            delays: builder().without_max_times().build(),
        }
    }
}

impl Reconnect {
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(MAX_DELAY)
    }

    pub fn reset(&mut self) {
        *self = Reconnect::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_grow_and_stay_capped() {
        let mut r = Reconnect::default();
        let delays: Vec<Duration> = (0..20).map(|_| r.next_delay()).collect();
        assert!(
            delays[0] >= MIN_DELAY && delays[0] <= MIN_DELAY * 2,
            "{delays:?}"
        );
        assert!(
            delays.iter().all(|d| *d <= MAX_DELAY * 2),
            "jitter adds at most one delay: {delays:?}"
        );
        assert!(delays[19] >= MAX_DELAY, "{delays:?}");
        r.reset();
        assert!(r.next_delay() <= MIN_DELAY * 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_for_gives_up_after_the_timeout() {
        let mut calls = 0;
        let result: Result<(), String> = retry_for(Duration::from_secs(1), "thing", || {
            calls += 1;
            async { Err("down".to_string()) }
        })
        .await;
        assert!(result.is_err());
        assert!(calls > 1 && calls < 10, "{calls}");
    }
}
