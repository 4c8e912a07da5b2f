//! `HttpClient`: the one HTTP client of the process (keep-alive pool, gzip,
//! rustls, redirects handled by us) behind reqwest-middleware's auth layer,
//! and `fetch`, the retry loop around "send + read body + decode".
//!
//! Retry lives here rather than in a middleware: errors while reading the
//! body and retryable decode errors happen after a middleware has returned,
//! so only a loop around the whole unit can retry them. The auth middleware
//! sits inside that loop, so each attempt asks the credential afresh.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Certificate, NoProxy, Proxy};
use reqwest_middleware::ClientWithMiddleware;

use super::authorize::AuthMiddleware;
use super::context::RequestContext;
use super::limits::{Limits, Slot};
use super::retry::{Backoff, host_pause};
use super::send::{Failure, exchange};
use crate::fetch::RequestStats;
use crate::fetch::{DecodeError, PageRequest, PageResponse};
use crate::fetch::{FetchError, FetchErrorKind};
use crate::plan::HostLimits;

/// How long a TCP + TLS connect may take, whatever the job's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Most requests in flight at once, all jobs together.
    pub concurrency: usize,
    pub user_agent: String,
    /// `[hosts."name"]`: per-host concurrency and rate limits, shared by
    /// every job (see `limits` for how a URL finds its entry).
    pub hosts: BTreeMap<String, HostLimits>,
}

/// The process's HTTP client; clones share the pool and the limits.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// With the auth middleware, for API requests.
    client: ClientWithMiddleware,
    /// The same pool without middleware, for token requests.
    plain: reqwest::Client,
    limits: Limits,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    pub fn new(opts: &HttpOptions) -> Result<Self, FetchError> {
        Self::with_env(opts, &|name| std::env::var(name).ok())
    }

    /// `new` with the proxy environment given, so tests need not change
    /// the process environment.
    pub(crate) fn with_env(
        opts: &HttpOptions,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, FetchError> {
        let setup = |error: reqwest::Error| {
            FetchError::new(
                "",
                "",
                FetchErrorKind::Setup {
                    message: super::send::describe(error),
                },
            )
        };
        let proxies = proxies(env).map_err(setup)?;
        // The system store (rustls-platform-verifier) fails to load on
        // images without CA certificates; the bundled roots always work.
        let plain = build(opts, &proxies, None)
            .or_else(|_| build(opts, &proxies, Some(bundled_roots())))
            .map_err(setup)?;
        let client = reqwest_middleware::ClientBuilder::new(plain.clone())
            .with(AuthMiddleware)
            .build();
        let limits = Limits::new(opts.concurrency, &opts.hosts);
        Ok(HttpClient {
            inner: Arc::new(Inner {
                client,
                plain,
                limits,
            }),
        })
    }

    /// Most requests to `url` in flight at once (global `concurrency`, or
    /// the host's own when lower): the widest a stream may fetch ahead.
    pub fn width_for(&self, url: &url::Url) -> usize {
        self.inner.limits.width(url)
    }

    /// A plain client (no middleware, no auth) for OAuth token requests.
    pub fn token_client(&self) -> reqwest::Client {
        self.inner.plain.clone()
    }

    /// Send `req` with the stream's credential and retry policy; read the body
    /// (<= ctx.max_page_bytes, enforced while reading); call `decode` on every 2xx
    /// response INSIDE the retry loop: a DecodeError with retryable=true is retried
    /// like a failed request (truncated body, bad JSON), retryable=false fails at once.
    pub async fn fetch<T>(
        &self,
        ctx: &RequestContext,
        req: &PageRequest,
        decode: impl Fn(&PageResponse) -> Result<T, DecodeError>,
    ) -> Result<T, FetchError> {
        let shown = ctx.redact(&req.url);
        ctx.check_target(&req.url)?;
        let backoff = Backoff::new(&ctx.retry);
        let started = tokio::time::Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let failure = match self.attempt(ctx, req, &decode, attempts).await {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            let delay = match failure.retry {
                true => backoff.delay(attempts, failure.retry_after, started.elapsed()),
                false => None,
            };
            let Some(delay) = delay else {
                return Err(ctx.error(&shown, with_attempts(failure.kind, attempts)));
            };
            tracing::warn!(
                job = %ctx.job,
                url = %shown,
                error = %summary(&failure.kind),
                attempt = attempts,
                delay_ms = delay.as_millis() as u64,
                "retrying request"
            );
            ctx.count(RequestStats::retry);
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: a request slot, send + body within the job's timeout,
    /// then decode (outside the slot: it needs no connection).
    async fn attempt<T>(
        &self,
        ctx: &RequestContext,
        req: &PageRequest,
        decode: &impl Fn(&PageResponse) -> Result<T, DecodeError>,
        attempts: u32,
    ) -> Result<T, Failure> {
        let response = {
            let slot = self.inner.limits.acquire(&req.url).await?;
            let sent = tokio::time::timeout(ctx.timeout, exchange(&self.inner.client, ctx, req));
            let sent = sent.await.unwrap_or_else(|_| {
                ctx.count(RequestStats::transport_error);
                Err(Failure::transient(FetchErrorKind::Timeout { attempts: 1 }))
            });
            if let Err(failure) = &sent {
                self.slow_down(ctx, &slot, failure, attempts);
            }
            sent?
        };
        decode(&response).map_err(|error| match error.retryable {
            true => Failure::transient(FetchErrorKind::Decode(error)),
            false => Failure::fatal(FetchErrorKind::Decode(error)),
        })
    }

    /// A 429 pauses its host for every job, set while this attempt still
    /// holds its slot: a request that takes the slot next already sees it.
    fn slow_down(&self, ctx: &RequestContext, slot: &Slot<'_>, failure: &Failure, attempts: u32) {
        if !matches!(failure.kind, FetchErrorKind::Status { status: 429, .. }) {
            return;
        }
        let pause = host_pause(&ctx.retry, attempts, failure.retry_after);
        tracing::warn!(
            job = %ctx.job,
            host = %slot.host(),
            pause_ms = pause.as_millis() as u64,
            "the host answered 429; pausing every request to it"
        );
        self.inner.limits.pause(slot.host(), pause);
    }
}

/// The final error counts every attempt made.
fn with_attempts(mut kind: FetchErrorKind, made: u32) -> FetchErrorKind {
    match &mut kind {
        FetchErrorKind::Status { attempts, .. }
        | FetchErrorKind::Transport { attempts, .. }
        | FetchErrorKind::Timeout { attempts } => *attempts = made,
        _ => {}
    }
    kind
}

/// A few words for the retry log line.
fn summary(kind: &FetchErrorKind) -> String {
    match kind {
        FetchErrorKind::Status { status, .. } => format!("status {status}"),
        FetchErrorKind::Transport { message, .. } => message.clone(),
        FetchErrorKind::Timeout { .. } => "timed out".into(),
        FetchErrorKind::Decode(error) => error.message.clone(),
        other => other.to_string(),
    }
}

fn build(
    opts: &HttpOptions,
    proxies: &[Proxy],
    roots: Option<Vec<Certificate>>,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(opts.user_agent.as_str())
        .gzip(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    for proxy in proxies {
        builder = builder.proxy(proxy.clone());
    }
    if let Some(roots) = roots {
        builder = builder.tls_certs_only(roots);
    }
    builder.build()
}

/// The Mozilla roots compiled into the binary.
fn bundled_roots() -> Vec<Certificate> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .filter_map(|der| Certificate::from_der(der.as_ref()).ok())
        .collect()
}

/// HTTP(S)_PROXY / ALL_PROXY / NO_PROXY as curl reads them, except that
/// loopback never goes through a proxy (a local test server or sidecar
/// behind a corporate proxy setting must still be reachable).
fn proxies(env: &dyn Fn(&str) -> Option<String>) -> reqwest::Result<Vec<Proxy>> {
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| env(name).filter(|value| !value.trim().is_empty()))
    };
    let all = first(&["ALL_PROXY", "all_proxy"]);
    let https = first(&["HTTPS_PROXY", "https_proxy"]).or_else(|| all.clone());
    // Under CGI, HTTP_PROXY can come from a request header ("httpoxy").
    let http = match env("REQUEST_METHOD") {
        Some(_) => None,
        None => first(&["HTTP_PROXY", "http_proxy"]),
    }
    .or(all);
    let no_proxy = no_proxy_list(first(&["NO_PROXY", "no_proxy"]).as_deref());
    let mut out = Vec::new();
    if let Some(target) = http {
        out.push(Proxy::http(target)?.no_proxy(NoProxy::from_string(&no_proxy)));
    }
    if let Some(target) = https {
        out.push(Proxy::https(target)?.no_proxy(NoProxy::from_string(&no_proxy)));
    }
    Ok(out)
}

fn no_proxy_list(user: Option<&str>) -> String {
    let loopback = "localhost,127.0.0.0/8,::1";
    match user {
        Some(user) => format!("{user},{loopback}"),
        None => loopback.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_roots_build_a_client() {
        let roots = bundled_roots();
        assert!(roots.len() > 100, "{}", roots.len());
        let opts = HttpOptions {
            concurrency: 2,
            user_agent: "apisync-test".into(),
            hosts: BTreeMap::new(),
        };
        assert!(build(&opts, &[], Some(roots)).is_ok());
    }

    async fn fetch_text(http: &HttpClient, url: &str) -> Result<String, FetchError> {
        let req = PageRequest {
            method: crate::plan::HttpMethod::Get,
            url: url::Url::parse(url).expect("test URL"),
            headers: vec![],
            body: None,
            secrets: Default::default(),
        };
        let job = super::super::context::tests::sample_job();
        let ctx = RequestContext::new(&job, &req.url, None);
        let text = |page: &PageResponse| Ok(String::from_utf8_lossy(&page.body).into_owned());
        http.fetch(&ctx, &req, text).await
    }

    #[tokio::test]
    async fn the_proxy_is_used_except_for_loopback() {
        use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};
        let proxy = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_body_string("via proxy"))
            .mount(&proxy)
            .await;
        let target = MockServer::start().await;
        Mock::given(any())
            .respond_with(ResponseTemplate::new(200).set_body_string("direct"))
            .mount(&target)
            .await;
        let proxy_url = proxy.uri();
        let env = move |name: &str| (name == "HTTP_PROXY").then(|| proxy_url.clone());
        let opts = HttpOptions {
            concurrency: 2,
            user_agent: "apisync-test".into(),
            hosts: BTreeMap::new(),
        };
        let http = HttpClient::with_env(&opts, &env).unwrap();
        let direct = fetch_text(&http, &format!("{}/x", target.uri())).await;
        assert_eq!(direct.unwrap(), "direct");
        let proxied = fetch_text(&http, "http://example.invalid/page").await;
        assert_eq!(proxied.unwrap(), "via proxy");
        let seen = proxy.received_requests().await.unwrap_or_default();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].url.host_str(), Some("example.invalid"));
    }

    #[test]
    fn loopback_is_always_exempt_from_proxies() {
        assert_eq!(no_proxy_list(None), "localhost,127.0.0.0/8,::1");
        assert_eq!(
            no_proxy_list(Some(".corp.example")),
            ".corp.example,localhost,127.0.0.0/8,::1"
        );
    }

    #[test]
    fn proxies_follow_the_environment() {
        let env = |name: &str| match name {
            "https_proxy" => Some("http://proxy.example:3128".to_string()),
            "HTTP_PROXY" => Some("http://other.example:3128".to_string()),
            _ => None,
        };
        assert_eq!(proxies(&env).unwrap().len(), 2);
        let cgi = |name: &str| match name {
            "REQUEST_METHOD" => Some("GET".to_string()),
            "HTTP_PROXY" => Some("http://evil.example".to_string()),
            _ => None,
        };
        assert!(proxies(&cgi).unwrap().is_empty());
        assert!(proxies(&|_| None).unwrap().is_empty());
    }
}
