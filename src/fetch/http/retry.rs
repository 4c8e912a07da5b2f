//! When to retry and how long to wait. reqwest-retry's classification
//! decides which transport errors are transient and its `ExponentialBackoff`
//! (full jitter, bounded by the job's `RetryPlan`) gives the delays; what it
//! lacks is `Retry-After` (it never sees the response), so the delay is
//! chosen here: the server's `Retry-After` when present, capped by
//! `max_backoff`, else the backoff's.

use std::time::{Duration, SystemTime};

use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::{Jitter, RetryDecision, RetryPolicy, Retryable};

use crate::plan::RetryPlan;

/// Statuses worth another attempt. Narrower than reqwest-retry's "every
/// 5xx": 501/505 will not change, and it misses 425 Too Early.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// Connect errors, timeouts and resets are transient; everything else a
/// request can fail with (a bad URL, a TLS failure) is not.
pub(crate) fn is_transient(error: &reqwest_middleware::Error) -> bool {
    error.is_timeout()
        || matches!(
            reqwest_retry::default_on_request_failure(error),
            Some(Retryable::Transient)
        )
}

/// `Retry-After`: delta seconds or an HTTP date, relative to `now`.
/// A date in the past means "now"; anything unparsable is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// How long a 429 pauses its host for every job: the server's
/// `Retry-After`, else this attempt's backoff without jitter (so the pause
/// is as long as the longest wait a retry of it could choose), both capped
/// by `max_backoff` like the retry's own wait.
pub(crate) fn host_pause(
    plan: &RetryPlan,
    attempts: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    let backoff = plan.initial_backoff.saturating_mul(1 << doublings);
    retry_after.unwrap_or(backoff).min(plan.max_backoff)
}

/// The retry budget of one `fetch` call.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: ExponentialBackoff,
    max_backoff: Duration,
    max_elapsed: Duration,
}

impl Backoff {
    pub(crate) fn new(plan: &RetryPlan) -> Self {
        // retry_bounds panics when min > max; the plan should never say
        // so, but a bad value must not take the process down.
        let initial = plan.initial_backoff.min(plan.max_backoff);
        let policy = ExponentialBackoff::builder()
            .retry_bounds(initial, plan.max_backoff)
            .jitter(Jitter::Full)
            .build_with_max_retries(plan.max_attempts.saturating_sub(1));
        Backoff {
            policy,
            max_backoff: plan.max_backoff,
            max_elapsed: plan.max_elapsed,
        }
    }

    /// The wait before attempt `attempts + 1`, or None when the budget is
    /// spent: `attempts` made already, `elapsed` since the first began.
    pub(crate) fn delay(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        elapsed: Duration,
    ) -> Option<Duration> {
        let past_retries = attempts.saturating_sub(1);
        let backoff = match self.policy.should_retry(SystemTime::now(), past_retries) {
            RetryDecision::DoNotRetry => return None,
            RetryDecision::Retry { execute_after } => execute_after
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        };
        let delay = retry_after.map_or(backoff, |server| server.min(self.max_backoff));
        (elapsed + delay <= self.max_elapsed).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(max_attempts: u32) -> RetryPlan {
        RetryPlan {
            max_attempts,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_elapsed: Duration::from_secs(60),
        }
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(42))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(42));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn retry_after_is_honoured_and_capped_by_max_backoff() {
        let backoff = Backoff::new(&plan(6));
        let elapsed = Duration::ZERO;
        let honoured = backoff.delay(1, Some(Duration::from_secs(3)), elapsed);
        assert_eq!(honoured, Some(Duration::from_secs(3)));
        let capped = backoff.delay(1, Some(Duration::from_secs(3600)), elapsed);
        assert_eq!(capped, Some(Duration::from_secs(5)));
    }

    #[test]
    fn backoff_stays_within_bounds_and_attempts() {
        let backoff = Backoff::new(&plan(4));
        for attempts in 1..4 {
            let delay = backoff.delay(attempts, None, Duration::ZERO);
            let delay = delay.expect("within max_attempts");
            assert!(delay <= Duration::from_secs(5), "{delay:?}");
        }
        assert_eq!(backoff.delay(4, None, Duration::ZERO), None);
        assert_eq!(Backoff::new(&plan(1)).delay(1, None, Duration::ZERO), None);
    }

    /// semantics.md: "exponential backoff and full jitter". The shape, not
    /// only an upper bound: attempt n waits uniformly in [0, bound(n)] where
    /// bound doubles from `initial_backoff` and stops at `max_backoff`.
    /// 1,000 draws per attempt: the bounds below are over ten standard
    /// deviations wide, so chance cannot fail them.
    #[test]
    fn backoff_grows_doubling_with_full_jitter_up_to_the_cap() {
        let plan = RetryPlan {
            max_attempts: 20,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(3200),
            max_elapsed: Duration::from_secs(24 * 3600),
        };
        let backoff = Backoff::new(&plan);
        let bounds_ms = [100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 3200.0, 3200.0];
        for (n, bound) in bounds_ms.iter().enumerate() {
            let attempts = n as u32 + 1;
            let draws: Vec<f64> = (0..1000)
                .map(|_| {
                    let delay = backoff.delay(attempts, None, Duration::ZERO);
                    delay.expect("within the budget").as_secs_f64() * 1000.0
                })
                .collect();
            let max = draws.iter().cloned().fold(0.0, f64::max);
            let min = draws.iter().cloned().fold(f64::MAX, f64::min);
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            assert!(
                max <= *bound,
                "attempt {attempts}: {max} ms above {bound} ms"
            );
            assert!(
                max > 0.9 * bound,
                "attempt {attempts}: the top of the range is reached"
            );
            assert!(
                min < 0.1 * bound,
                "attempt {attempts}: full jitter reaches near zero"
            );
            assert!(
                (0.4 * bound..0.6 * bound).contains(&mean),
                "attempt {attempts}: uniform, mean {mean} ms for a bound of {bound} ms"
            );
        }
    }

    #[test]
    fn max_elapsed_ends_the_retries() {
        let backoff = Backoff::new(&plan(6));
        let late = Duration::from_secs(58);
        assert_eq!(backoff.delay(1, Some(Duration::from_secs(3)), late), None);
        assert!(
            backoff
                .delay(1, Some(Duration::from_secs(1)), late)
                .is_some()
        );
    }

    #[test]
    fn initial_above_max_does_not_panic() {
        let odd = RetryPlan {
            initial_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(1),
            ..plan(3)
        };
        let delay = Backoff::new(&odd).delay(1, None, Duration::ZERO);
        assert!(delay.is_some_and(|d| d <= Duration::from_secs(1)));
    }

    #[test]
    fn a_host_pause_follows_retry_after_else_the_backoff() {
        let plan = plan(6);
        let pause = |attempts, after| host_pause(&plan, attempts, after);
        assert_eq!(
            pause(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            pause(1, Some(Duration::from_secs(600))),
            Duration::from_secs(5)
        );
        assert_eq!(pause(1, None), Duration::from_millis(100));
        assert_eq!(pause(3, None), Duration::from_millis(400));
        assert_eq!(pause(40, None), Duration::from_secs(5));
    }

    /// A refused connection is worth another attempt; a failure inside the
    /// middleware (the auth layer, say) is not.
    #[tokio::test]
    async fn connect_errors_are_transient_and_middleware_errors_are_not() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("its address").port()
        };
        let refused = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .expect_err("nothing listens on a port just given back");
        assert!(is_transient(&reqwest_middleware::Error::Reqwest(refused)));
        let middleware = reqwest_middleware::Error::middleware(std::io::Error::other("no token"));
        assert!(!is_transient(&middleware));
    }

    #[test]
    fn retryable_statuses() {
        for status in [408, 425, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(status), "{status}");
        }
        for status in [200, 301, 400, 401, 403, 404, 409, 422, 501, 505] {
            assert!(!is_retryable_status(status), "{status}");
        }
    }
}
