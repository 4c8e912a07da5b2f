//! Time decisions of a token source, kept pure so they are tested without a
//! clock: when to refresh, how long to back off, and the clock itself
//! (injectable, because paused tokio time and real sockets do not mix).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Token requests made per refresh before giving up (5xx, 429, network).
pub(crate) const MAX_ATTEMPTS: u32 = 4;
const BASE_BACKOFF: Duration = Duration::from_millis(500);
/// Also the cap on a server's Retry-After.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest lifetime believed, so `sent + lifetime` cannot overflow an `Instant`.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);
/// Shortest lifetime believed: with refreshes at half-life, at most two
/// token requests a second per auth, whatever `expires_in` says. Not more:
/// real providers issue tokens of a few seconds.
pub(crate) const MIN_LIFETIME: Duration = Duration::from_secs(1);

/// A lifetime from a server or the configuration, within sane bounds.
pub(crate) fn clamp_lifetime(lifetime: Duration) -> Duration {
    lifetime.clamp(MIN_LIFETIME, MAX_LIFETIME)
}

/// When to refresh a token of `lifetime` whose request was sent at `sent`:
/// `refresh_before` ahead of expiry, but never before half its life, so a
/// `refresh_before` at or above the lifetime does not mean a token request
/// per API request.
pub(crate) fn refresh_at(sent: Instant, lifetime: Duration, refresh_before: Duration) -> Instant {
    let early = lifetime.saturating_sub(refresh_before);
    sent + early.max(lifetime / 2)
}

/// Shortest and longest wait before a failed refresh is tried again while
/// the token is still valid.
const EARLY_RETRY_MIN: Duration = Duration::from_secs(5);
const EARLY_RETRY_MAX: Duration = Duration::from_secs(300);

/// How long to keep a still-valid token after a failed early refresh before
/// trying again: a quarter of the life `left`, between 5 s and 5 min. Soon
/// enough for several tries before expiry, rare enough that a failing token
/// endpoint is not asked on every API request.
pub(crate) fn early_retry_delay(left: Duration) -> Duration {
    (left / 4).clamp(EARLY_RETRY_MIN, EARLY_RETRY_MAX)
}

/// Wait before retry number `failed` (1 after the first failure). A server's
/// Retry-After wins, capped; otherwise exponential with equal jitter, where
/// `jitter` is uniform in [0, 1).
pub(crate) fn backoff(failed: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(MAX_BACKOFF);
    }
    let exponent = failed.saturating_sub(1).min(16);
    let full = BASE_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF);
    let half = full / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Parse Retry-After: delay seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

type NowFn = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Where a token source reads the time: tokio's clock, or a test's.
#[derive(Clone, Default)]
pub(crate) struct Clock(Option<NowFn>);

impl Clock {
    #[cfg(test)]
    pub(crate) fn manual(now: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        Clock(Some(Arc::new(now)))
    }

    pub(crate) fn now(&self) -> Instant {
        match &self.0 {
            Some(now) => now(),
            None => Instant::now(),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Clock(manual)"
        } else {
            "Clock(tokio)"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn refresh_before_applies_to_long_tokens() {
        let sent = Instant::now();
        assert_eq!(
            refresh_at(sent, 3600 * SECOND, 60 * SECOND),
            sent + 3540 * SECOND
        );
    }

    #[test]
    fn refresh_never_before_half_life() {
        let sent = Instant::now();
        assert_eq!(
            refresh_at(sent, 20 * SECOND, 60 * SECOND),
            sent + 10 * SECOND
        );
        assert_eq!(
            refresh_at(sent, 100 * SECOND, 60 * SECOND),
            sent + 50 * SECOND
        );
        assert_eq!(
            refresh_at(sent, 20 * SECOND, 20 * SECOND),
            sent + 10 * SECOND
        );
    }

    #[test]
    fn early_retry_waits_a_quarter_of_the_life_left_within_bounds() {
        assert_eq!(early_retry_delay(60 * SECOND), 15 * SECOND);
        assert_eq!(early_retry_delay(SECOND), 5 * SECOND);
        assert_eq!(early_retry_delay(Duration::ZERO), 5 * SECOND);
        assert_eq!(early_retry_delay(86_400 * SECOND), 300 * SECOND);
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        assert_eq!(backoff(1, None, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(1, None, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(3, None, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(30, None, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(1, Some(Duration::ZERO), 0.7), Duration::ZERO);
        assert_eq!(backoff(1, Some(3 * SECOND), 0.7), 3 * SECOND);
        assert_eq!(backoff(1, Some(3600 * SECOND), 0.7), MAX_BACKOFF);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 7 "), Some(7 * SECOND));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
