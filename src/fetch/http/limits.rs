//! Request limits shared by every job of the process: at most `concurrency`
//! requests in flight overall, and per `[hosts."name"]` at most its
//! `concurrency` in flight and at most its `rate_limit`, spread evenly (a
//! governor GCRA limiter with a burst of one). A 429 pauses its host for
//! everyone until its `Retry-After` has passed.
//!
//! A slot is taken per attempt and covers its send and body read; the
//! retry loop drops it before it sleeps, so a backing-off request never
//! holds a slot another could use.
//!
//! Which host a URL belongs to: a `[hosts]` key is a host name (`api.example.com`,
//! `127.0.0.1`, `[::1]`) covering every port, or `name:port` covering that port
//! only; the port form wins. Names are compared as written, with no DNS:
//! `localhost` and `127.0.0.1` are two hosts. A host without an entry has no
//! limits of its own, but its 429 pauses still apply, per host and port.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use url::Url;

use super::send::Failure;
use crate::fetch::FetchErrorKind;
use crate::plan::{HostLimits, RateLimit};

/// The request slots of the process (one per `HttpClient` and its clones).
#[derive(Debug)]
pub(crate) struct Limits {
    global: Semaphore,
    /// `global`'s size (a semaphore does not tell it once permits are out).
    concurrency: usize,
    /// Per configured host key, built once: the set is fixed by the config.
    hosts: HashMap<String, HostGate>,
    pauses: Pauses,
    clock: TokioClock,
}

/// A right to send one attempt; dropping it frees the slots.
#[derive(Debug)]
pub(crate) struct Slot<'a> {
    _host: Option<SemaphorePermit<'a>>,
    _global: SemaphorePermit<'a>,
    host: String,
}

impl Slot<'_> {
    /// The host key the attempt counted against (for a 429 pause).
    pub(crate) fn host(&self) -> &str {
        &self.host
    }
}

impl Limits {
    pub(crate) fn new(concurrency: usize, hosts: &BTreeMap<String, HostLimits>) -> Self {
        let clock = TokioClock::default();
        let hosts = hosts
            .iter()
            .map(|(name, limits)| (name.to_lowercase(), HostGate::new(limits, &clock)))
            .collect();
        Limits {
            global: Semaphore::new(concurrency.max(1)),
            concurrency: concurrency.max(1),
            hosts,
            pauses: Pauses::default(),
            clock,
        }
    }

    /// Wait until `url`'s host is not paused, a host slot, a global slot and
    /// a rate-limit cell are all available, and take them. The cell is
    /// taken last, with the slots already held, so the request goes out the
    /// moment it is allowed: a cell never waits for a slot and then leaves
    /// together with others.
    pub(crate) async fn acquire(&self, url: &Url) -> Result<Slot<'_>, Failure> {
        let host = self.host_key(url);
        let gate = self.hosts.get(&host);
        let host_permit = match gate.and_then(|g| g.concurrency.as_ref()) {
            Some(slots) => Some(slots.acquire().await.map_err(|_| shut_down())?),
            None => None,
        };
        loop {
            self.pauses.wait(&host).await;
            let global = self.global.acquire().await.map_err(|_| shut_down())?;
            // A 429 may have arrived while we queued for the global slot.
            if self.pauses.until(&host).is_some() {
                continue;
            }
            if let Some(rate) = gate.and_then(|g| g.rate.as_ref())
                && let Err(not_until) = rate.check()
            {
                // Leave the global slot to other hosts while we wait.
                drop(global);
                tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
                continue;
            }
            return Ok(Slot {
                _host: host_permit,
                _global: global,
                host,
            });
        }
    }

    /// Most requests to `url` that may be in flight at once: the global
    /// `concurrency`, or the host's own when lower. Fetch-ahead sizes its
    /// window by it, so a stream never queues more than it could send.
    pub(crate) fn width(&self, url: &Url) -> usize {
        let host = self.hosts.get(&self.host_key(url)).and_then(|g| g.width);
        host.map_or(self.concurrency, |n| n.min(self.concurrency))
    }

    /// Hold back every request to `host` for `length` (a 429 said so).
    /// Pauses only ever grow: a shorter one never ends a longer one early.
    pub(crate) fn pause(&self, host: &str, length: Duration) {
        self.pauses.extend(host, Instant::now() + length);
    }

    /// The key `url` counts against: `host:port` or `host` from `[hosts]`,
    /// else `host:port`.
    pub(crate) fn host_key(&self, url: &Url) -> String {
        let name = url.host_str().unwrap_or_default().to_lowercase();
        let with_port = match url.port_or_known_default() {
            Some(port) => format!("{name}:{port}"),
            None => name.clone(),
        };
        if !self.hosts.contains_key(&with_port) && self.hosts.contains_key(&name) {
            return name;
        }
        with_port
    }
}

fn shut_down() -> Failure {
    Failure::fatal(FetchErrorKind::Transport {
        attempts: 1,
        message: "the request limiter was shut down".into(),
    })
}

/// One configured host's own limits.
struct HostGate {
    concurrency: Option<Semaphore>,
    /// `concurrency`'s size.
    width: Option<usize>,
    rate: Option<RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>>,
}

impl std::fmt::Debug for HostGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostGate")
            .field("concurrency", &self.concurrency)
            .field("rate", &self.rate.is_some())
            .finish()
    }
}

impl HostGate {
    fn new(limits: &HostLimits, clock: &TokioClock) -> Self {
        HostGate {
            concurrency: limits.concurrency.map(|n| Semaphore::new(n.max(1))),
            width: limits.concurrency.map(|n| n.max(1)),
            rate: limits
                .rate_limit
                .and_then(quota)
                .map(|quota| RateLimiter::direct_with_clock(quota, clock.clone())),
        }
    }
}

/// `count` per `per`, one cell every `per / count` and no burst, so the
/// server sees an even stream rather than `count` requests at once.
fn quota(rate: RateLimit) -> Option<Quota> {
    Quota::with_period(rate.per / rate.count.max(1))
}

/// Governor reads the time through this, so that tests with paused tokio
/// time drive the rate limiter too.
#[derive(Debug, Clone)]
struct TokioClock {
    start: Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.start.elapsed())
    }
}

/// When each paused host may be called again. Only hosts paused within
/// the last `max_backoff` have an entry: ended pauses are dropped whenever
/// a new one starts.
#[derive(Debug, Default)]
struct Pauses {
    until: Mutex<HashMap<String, Instant>>,
}

impl Pauses {
    fn extend(&self, host: &str, until: Instant) {
        let now = Instant::now();
        let mut map = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, end| *end > now);
        let end = map.entry(host.to_string()).or_insert(until);
        *end = (*end).max(until);
    }

    /// The end of `host`'s pause, if it is paused now.
    fn until(&self, host: &str) -> Option<Instant> {
        let map = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(host).copied().filter(|end| *end > Instant::now())
    }

    /// Returns once `host` is not paused; a pause extended while we sleep
    /// is waited out too.
    async fn wait(&self, host: &str) {
        while let Some(end) = self.until(host) {
            tokio::time::sleep_until(end).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::FutureExt as _;

    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URL")
    }

    fn limits(concurrency: usize, hosts: &[(&str, Option<usize>, Option<u32>)]) -> Arc<Limits> {
        let hosts = hosts
            .iter()
            .map(|(name, concurrency, per_second)| {
                let rate_limit = per_second.map(|count| RateLimit {
                    count,
                    per: Duration::from_secs(1),
                });
                let limits = HostLimits {
                    rate_limit,
                    concurrency: *concurrency,
                };
                (name.to_string(), limits)
            })
            .collect();
        Arc::new(Limits::new(concurrency, &hosts))
    }

    #[test]
    fn host_keys_prefer_host_and_port_and_never_resolve_names() {
        let limits = limits(
            4,
            &[
                ("api.example.com", Some(1), None),
                ("127.0.0.1:8080", None, None),
            ],
        );
        let key = |text: &str| limits.host_key(&url(text));
        assert_eq!(key("https://API.example.com/x"), "api.example.com");
        assert_eq!(key("http://api.example.com:81/x"), "api.example.com");
        assert_eq!(key("http://127.0.0.1:8080/x"), "127.0.0.1:8080");
        assert_eq!(key("http://127.0.0.1:9090/x"), "127.0.0.1:9090");
        assert_eq!(key("http://localhost:8080/x"), "localhost:8080");
        assert_eq!(key("https://other.example.com/x"), "other.example.com:443");
        assert_eq!(key("http://[::1]:80/x"), "[::1]:80");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_back_its_host_only_until_it_ends() {
        let limits = limits(4, &[]);
        let started = Instant::now();
        let host = limits.host_key(&url("http://a.example/"));
        limits.pause(&host, Duration::from_secs(3));
        // A shorter pause never ends a longer one early.
        limits.pause(&host, Duration::from_secs(1));
        let other = limits.acquire(&url("http://b.example/")).await.unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "other hosts are not paused"
        );
        drop(other);
        let slot = limits.acquire(&url("http://a.example/x")).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(slot.host(), "a.example:80");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_extended_while_waiting_is_waited_out() {
        let limits = limits(4, &[]);
        let started = Instant::now();
        limits.pause("a.example:80", Duration::from_secs(1));
        let waiter = tokio::spawn({
            let limits = limits.clone();
            async move {
                let _slot = limits.acquire(&url("http://a.example/")).await.unwrap();
                started.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        limits.pause("a.example:80", Duration::from_secs(2));
        let waited = waiter.await.unwrap();
        assert!(waited >= Duration::from_millis(2500), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_queued_for_a_slot_honours_a_pause_set_meanwhile() {
        let limits = limits(1, &[]);
        let started = Instant::now();
        let first = limits.acquire(&url("http://a.example/")).await.unwrap();
        let queued = tokio::spawn({
            let limits = limits.clone();
            async move {
                let _slot = limits.acquire(&url("http://a.example/")).await.unwrap();
                started.elapsed()
            }
        });
        tokio::task::yield_now().await;
        // The first request got a 429: pause, then free the slot.
        limits.pause(first.host(), Duration::from_secs(2));
        drop(first);
        let waited = queued.await.unwrap();
        assert!(waited >= Duration::from_secs(2), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn host_and_global_slots_are_both_held() {
        let limits = limits(3, &[("a.example", Some(2), None)]);
        let a1 = limits.acquire(&url("http://a.example/")).await.unwrap();
        let _a2 = limits.acquire(&url("http://a.example/")).await.unwrap();
        assert!(
            limits
                .acquire(&url("http://a.example/"))
                .now_or_never()
                .is_none(),
            "a third request to a host limited to two waits"
        );
        let b1 = limits.acquire(&url("http://b.example/")).await.unwrap();
        assert!(
            limits
                .acquire(&url("http://b.example/"))
                .now_or_never()
                .is_none(),
            "the global limit of three is reached"
        );
        drop(a1);
        assert!(
            limits
                .acquire(&url("http://b.example/"))
                .now_or_never()
                .is_some()
        );
        drop(b1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_limit_spreads_requests_evenly() {
        let limits = limits(8, &[("a.example", None, Some(10))]);
        let started = Instant::now();
        let mut sent_at = Vec::new();
        for _ in 0..5 {
            let _slot = limits.acquire(&url("http://a.example/")).await.unwrap();
            sent_at.push(started.elapsed());
        }
        assert_eq!(sent_at[0], Duration::ZERO, "the first goes at once");
        for pair in sent_at.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_millis(100), "no burst: {sent_at:?}");
        }
        let unlimited = limits.acquire(&url("http://b.example/")).now_or_never();
        assert!(unlimited.is_some(), "other hosts are not rate limited");
    }
}
