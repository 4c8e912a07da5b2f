//! `TokenSource`: the one token of a named OAuth2 auth, shared by every task.
//!
//! Reading a valid token takes only a short `std` read lock on a snapshot.
//! A refresh is single-flight and runs on a task of its own: the tasks that
//! need it wait on a `watch` channel for its result (token or error), and
//! the refresh runs to completion and stores a rotated refresh token even
//! when every request waiting on it is dropped (its timeout, SIGTERM, the
//! stall watchdog). Otherwise a refresh token the server already rotated
//! would be lost, and the next refresh would send the spent one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::endpoint::{Endpoint, Grant, Issued};
use super::error::TokenError;
use super::store::TokenStore;
use super::timing::{self, Clock};
use crate::auth::{AuthError, RefreshOutcome, resolve_secret};
use crate::plan::AuthPlan;
use crate::secret::Secret;

/// An access token and when to replace it.
#[derive(Debug)]
struct Token {
    value: Secret,
    generation: u64,
    refresh_at: Instant,
    expires_at: Instant,
}

/// What a finished refresh hands its waiters: the new token, or the
/// (already redacted) message of why it failed.
type Outcome = Result<Arc<Token>, String>;

/// A refresh in flight: `None` until it finishes.
type Flight = watch::Receiver<Option<Outcome>>;

/// Refresh bookkeeping, behind a `std` mutex never held across an await.
#[derive(Debug, Default)]
struct State {
    /// The refresh in flight, for others to join.
    flight: Option<Flight>,
    /// The latest rotated refresh token, for stores that keep nothing.
    rotated: Option<Secret>,
    /// A rotated refresh token the store failed to save: the only live one
    /// (the stored one is spent), so the next refresh sends it and saves it.
    unsaved: Option<Secret>,
    /// A final error (bad client, revoked grant): asking again cannot help.
    /// Transient errors never land here, so they cannot poison the source.
    fatal: Option<String>,
    /// After a failed refresh: no early (token still valid) refresh before
    /// this, so a failing endpoint is not asked on every request.
    early_retry_at: Option<Instant>,
}

/// The token source of one named OAuth2 auth.
pub struct TokenSource {
    shared: Arc<Shared>,
}

/// What the source and its refresh task share.
struct Shared {
    auth: String,
    endpoint: Endpoint,
    /// The configured refresh token; `None` for client credentials.
    configured_refresh: Option<Secret>,
    refresh_before: Duration,
    client: reqwest::Client,
    store: Arc<dyn TokenStore>,
    snapshot: RwLock<Option<Arc<Token>>>,
    state: std::sync::Mutex<State>,
    requests: AtomicU64,
    clock: Clock,
    /// Cancelled by [`TokenSource::settle`]: the process is ending, so no
    /// further token request attempts start.
    closing: CancellationToken,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("auth", &self.shared.auth)
            .field("token_url", &self.shared.endpoint.display_url())
            .field("generation", &self.shared.generation())
            .field("token_requests", &self.token_requests())
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// Resolve the client's secrets now; the first token is fetched on first use.
    pub fn new(
        name: &str,
        plan: &AuthPlan,
        client: reqwest::Client,
        store: Arc<dyn TokenStore>,
    ) -> Result<Self, AuthError> {
        let (oauth, refresh) = match plan {
            AuthPlan::ClientCredentials(oauth) => (oauth, None),
            AuthPlan::RefreshToken {
                oauth,
                refresh_token,
            } => (oauth, Some(resolve_secret(refresh_token)?)),
            _ => {
                return Err(AuthError::TokenEndpoint {
                    auth: name.to_string(),
                    message: "not an oauth2 auth type".into(),
                });
            }
        };
        let shared = Shared {
            auth: name.to_string(),
            endpoint: Endpoint::new(name, oauth)?,
            configured_refresh: refresh,
            refresh_before: oauth.refresh_before,
            client,
            store,
            snapshot: RwLock::new(None),
            state: std::sync::Mutex::new(State::default()),
            requests: AtomicU64::new(0),
            clock: Clock::default(),
            closing: CancellationToken::new(),
        };
        Ok(TokenSource {
            shared: Arc::new(shared),
        })
    }

    #[cfg(test)]
    pub(crate) fn with_clock(self, clock: Clock) -> Self {
        let mut shared = Arc::try_unwrap(self.shared)
            .unwrap_or_else(|_| panic!("with_clock is called before the source is shared"));
        shared.clock = clock;
        TokenSource {
            shared: Arc::new(shared),
        }
    }

    /// The token to send and its generation. Cheap while the token is fresh;
    /// past its refresh point one task refreshes while the others keep using
    /// the still-valid token (and it too keeps it if the refresh fails); once
    /// expired, everyone waits for one refresh.
    pub async fn current(&self) -> Result<(Secret, u64), AuthError> {
        let seen = self.shared.snapshot();
        let now = self.shared.clock.now();
        if let Some(token) = &seen {
            if now < token.refresh_at {
                return Ok(pair(token));
            }
            if now < token.expires_at {
                return Ok(pair(&*self.early(token, now).await));
            }
        }
        let generation = seen.map_or(0, |token| token.generation);
        let (token, _) = self.refreshed(generation).await?;
        Ok(pair(&token))
    }

    /// A request sent with `generation` was refused (401). Refresh if that
    /// is still the current token; concurrent calls cause one refresh.
    pub async fn invalidate(&self, generation: u64) -> Result<RefreshOutcome, AuthError> {
        if self.shared.generation() != generation {
            return Ok(RefreshOutcome::AlreadyNewer);
        }
        Ok(match self.refreshed(generation).await? {
            (_, true) => RefreshOutcome::Refreshed,
            (_, false) => RefreshOutcome::AlreadyNewer,
        })
    }

    /// Token requests sent so far, retries included.
    pub fn token_requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The process is ending: start no further token request attempts, and
    /// wait up to `timeout` for a refresh in flight to finish, so that a
    /// refresh token the server already rotated is stored. False if one was
    /// still running at the timeout.
    pub async fn settle(&self, timeout: Duration) -> bool {
        self.shared.closing.cancel();
        let flight = self.shared.lock_state().flight.clone();
        let Some(mut flight) = flight else {
            return true;
        };
        // `Ok(Err(_))`: its task ended without an answer; nothing to wait for.
        tokio::time::timeout(timeout, flight.wait_for(Option::is_some))
            .await
            .is_ok()
    }

    /// In the refresh window with `token` still valid: refresh unless one is
    /// in flight or failed recently, and keep `token` if the refresh fails.
    async fn early(&self, token: &Arc<Token>, now: Instant) -> Arc<Token> {
        let flight = {
            let mut state = self.shared.lock_state();
            if let Some(newer) = self.shared.newer_than(token.generation) {
                return newer;
            }
            let backing_off = state.early_retry_at.is_some_and(|at| now < at);
            let closing = self.shared.closing.is_cancelled();
            if state.flight.is_some() || state.fatal.is_some() || backing_off || closing {
                return token.clone();
            }
            self.shared.start(&mut state)
        };
        match self.shared.wait(flight).await {
            Ok(fresh) => fresh,
            // The message was logged by the refresh; `current` reports it
            // once the token has expired and a refresh still fails.
            Err(_) => token.clone(),
        }
    }

    /// A token newer than `generation`: one already there, the result of the
    /// refresh in flight, or of one this call starts (then `true`).
    async fn refreshed(&self, generation: u64) -> Result<(Arc<Token>, bool), AuthError> {
        let (flight, started) = {
            let mut state = self.shared.lock_state();
            if let Some(newer) = self.shared.newer_than(generation) {
                return Ok((newer, false));
            }
            match &state.flight {
                Some(flight) => (flight.clone(), false),
                None => {
                    if let Some(message) = &state.fatal {
                        return Err(self.shared.error(message.clone()));
                    }
                    if self.shared.closing.is_cancelled() {
                        return Err(self.shared.error(CLOSING.into()));
                    }
                    (self.shared.start(&mut state), true)
                }
            }
        };
        let token = self
            .shared
            .wait(flight)
            .await
            .map_err(|message| self.shared.error(message))?;
        Ok((token, started))
    }
}

const CLOSING: &str = "the process is stopping: no new token request is started";

impl Shared {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot(&self) -> Option<Arc<Token>> {
        self.snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn generation(&self) -> u64 {
        self.snapshot().map_or(0, |token| token.generation)
    }

    fn newer_than(&self, generation: u64) -> Option<Arc<Token>> {
        self.snapshot()
            .filter(|token| token.generation != generation)
    }

    /// Start a refresh on a task of its own (holding `state`, so there is
    /// only ever one): nothing that happens to the callers can cut it short
    /// between the token endpoint's answer and the store's commit.
    fn start(self: &Arc<Self>, state: &mut State) -> Flight {
        let (done, flight) = watch::channel(None);
        state.flight = Some(flight.clone());
        let shared = self.clone();
        tokio::spawn(async move {
            let result = shared.refresh().await;
            shared.complete(result, &done);
        });
        flight
    }

    /// Wait for a refresh's outcome.
    async fn wait(&self, mut flight: Flight) -> Outcome {
        if let Ok(outcome) = flight.wait_for(Option::is_some).await
            && let Some(outcome) = outcome.clone()
        {
            return outcome;
        }
        // Its task ended without an answer (a panic, a runtime shutting
        // down): forget it so the next call can start another.
        let mut state = self.lock_state();
        if state
            .flight
            .as_ref()
            .is_some_and(|f| f.same_channel(&flight))
        {
            state.flight = None;
        }
        Err("the token refresh stopped before it finished".into())
    }

    /// Publish a refresh's result: the token first (so nobody starts another
    /// refresh for a token already replaced), then the flight ends.
    fn complete(&self, result: Result<Issued, TokenError>, done: &watch::Sender<Option<Outcome>>) {
        let (outcome, fatal) = match result {
            Ok(issued) => (Ok(self.install(issued)), None),
            Err(error) => {
                let message = error.message(&self.endpoint.display_url());
                tracing::warn!(auth = %self.auth, %message, "token refresh failed");
                let fatal = error.is_final().then(|| message.clone());
                (Err(message), fatal)
            }
        };
        let mut state = self.lock_state();
        state.early_retry_at = outcome.is_err().then(|| self.early_retry_at());
        if outcome.is_ok() || fatal.is_some() {
            state.fatal = fatal;
        }
        state.flight = None;
        drop(state);
        done.send_replace(Some(outcome));
    }

    /// When a failed refresh may be tried again while the token is valid.
    fn early_retry_at(&self) -> Instant {
        let now = self.clock.now();
        let left = self.snapshot().map_or(Duration::ZERO, |token| {
            token.expires_at.saturating_duration_since(now)
        });
        now + timing::early_retry_delay(left)
    }

    async fn refresh(&self) -> Result<Issued, TokenError> {
        match &self.configured_refresh {
            None => self.request(&Grant::ClientCredentials).await,
            Some(configured) => self.refresh_grant(configured).await,
        }
    }

    async fn request(&self, grant: &Grant<'_>) -> Result<Issued, TokenError> {
        self.endpoint
            .request(
                &self.client,
                grant,
                &self.clock,
                &self.requests,
                &self.closing,
            )
            .await
    }

    /// The refresh token grant under the store's lock: an unsaved rotation
    /// wins, then the stored (rotated) refresh token, then the configured
    /// one; a new one is committed before the new access token is handed
    /// out. A rotation is remembered before it is saved, so a failed save
    /// does not lose it: the next refresh sends it and saves it again.
    async fn refresh_grant(&self, configured: &Secret) -> Result<Issued, TokenError> {
        let store_error = |action| move |source| TokenError::Store { action, source };
        let guard = self
            .store
            .begin_refresh(&self.auth)
            .await
            .map_err(store_error("lock"))?;
        let refresh = {
            let state = self.lock_state();
            state
                .unsaved
                .clone()
                .or_else(|| guard.stored())
                .or_else(|| state.rotated.clone())
                .unwrap_or_else(|| configured.clone())
        };
        crate::secret::register(&refresh);
        let issued = match self.request(&Grant::Refresh(&refresh)).await {
            Ok(issued) => issued,
            Err(TokenError::RotatedButUnusable { rotated, error }) => {
                crate::secret::register_issued(&rotated);
                let unsaved = {
                    let mut state = self.lock_state();
                    state.rotated = Some(rotated.clone());
                    state.unsaved = Some(rotated);
                    state.unsaved.clone()
                };
                guard.finish(unsaved).await.map_err(store_error("save"))?;
                self.lock_state().unsaved = None;
                return Err(*error);
            }
            Err(error) => return Err(error),
        };
        let unsaved = {
            let mut state = self.lock_state();
            if let Some(rotated) = &issued.rotated {
                crate::secret::register_issued(rotated);
                state.rotated = Some(rotated.clone());
                state.unsaved = Some(rotated.clone());
            }
            state.unsaved.clone()
        };
        guard.finish(unsaved).await.map_err(store_error("save"))?;
        self.lock_state().unsaved = None;
        Ok(issued)
    }

    fn install(&self, issued: Issued) -> Arc<Token> {
        crate::secret::register_issued(&issued.access);
        let mut slot = self
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let generation = slot.as_ref().map_or(0, |t| t.generation) + 1;
        let token = Arc::new(Token {
            value: issued.access,
            generation,
            refresh_at: timing::refresh_at(issued.sent, issued.lifetime, self.refresh_before),
            expires_at: issued.sent + issued.lifetime,
        });
        *slot = Some(token.clone());
        tracing::debug!(auth = %self.auth, generation, lifetime = ?issued.lifetime, "new access token");
        token
    }

    fn error(&self, message: String) -> AuthError {
        AuthError::TokenEndpoint {
            auth: self.auth.clone(),
            message,
        }
    }
}

fn pair(token: &Token) -> (Secret, u64) {
    (token.value.clone(), token.generation)
}

#[cfg(test)]
mod tests {
    //! Expiry logic with a manual clock against a real local token endpoint
    //! (paused tokio time would race the socket).

    use std::sync::atomic::AtomicU64;

    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;

    use super::*;
    use crate::auth::NoTokenStore;
    use crate::plan::{ClientAuthMethod, OAuthPlan, SecretSource};

    struct Endpoint {
        issued: AtomicU64,
        expires_in: AtomicU64,
        /// What the endpoint answers: [`ANSWER`], [`UNAVAILABLE`] or [`GARBAGE`].
        answer: std::sync::atomic::AtomicU8,
        /// While set, token answers wait for a `release` permit.
        gate: std::sync::atomic::AtomicBool,
        arrived: tokio::sync::Notify,
        release: tokio::sync::Semaphore,
    }

    const ANSWER: u8 = 0;
    /// 503 with Retry-After: 0 (retried at once, then given up).
    const UNAVAILABLE: u8 = 1;
    /// 200 whose body is not JSON.
    const GARBAGE: u8 = 2;

    impl Default for Endpoint {
        fn default() -> Self {
            Endpoint {
                issued: AtomicU64::new(0),
                expires_in: AtomicU64::new(0),
                answer: std::sync::atomic::AtomicU8::new(ANSWER),
                gate: std::sync::atomic::AtomicBool::new(false),
                arrived: tokio::sync::Notify::new(),
                release: tokio::sync::Semaphore::new(0),
            }
        }
    }

    async fn token(State(state): State<Arc<Endpoint>>) -> Response {
        if state.gate.load(Ordering::SeqCst) {
            state.arrived.notify_one();
            state.release.acquire().await.unwrap().forget();
        }
        match state.answer.load(Ordering::SeqCst) {
            UNAVAILABLE => {
                return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")]).into_response();
            }
            GARBAGE => return (StatusCode::OK, "<html>maintenance</html>").into_response(),
            _ => {}
        }
        let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
        axum::Json(serde_json::json!({
            "access_token": format!("at-{n}"),
            "token_type": "bearer",
            "expires_in": state.expires_in.load(Ordering::SeqCst),
        }))
        .into_response()
    }

    async fn endpoint(expires_in: u64) -> (Arc<Endpoint>, url::Url) {
        let state = Arc::new(Endpoint::default());
        state.expires_in.store(expires_in, Ordering::SeqCst);
        let app = axum::Router::new()
            .route("/token", post(token))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (state, url.parse().unwrap())
    }

    /// A source whose clock reads `base + *offset` seconds.
    fn source(url: url::Url, refresh_before: u64, offset: Arc<AtomicU64>) -> TokenSource {
        let plan = AuthPlan::ClientCredentials(OAuthPlan {
            token_url: url,
            client_id: SecretSource::Plain(Secret::new("id")),
            client_secret: Some(SecretSource::Plain(Secret::new("secret"))),
            scopes: vec![],
            client_auth: ClientAuthMethod::Basic,
            refresh_before: Duration::from_secs(refresh_before),
            audience: None,
            default_lifetime: Duration::from_secs(3600),
        });
        let base = Instant::now();
        let clock =
            Clock::manual(move || base + Duration::from_secs(offset.load(Ordering::SeqCst)));
        TokenSource::new(
            "acme",
            &plan,
            reqwest::Client::new(),
            Arc::new(NoTokenStore),
        )
        .unwrap()
        .with_clock(clock)
    }

    async fn calls_at(source: &TokenSource, offset: &AtomicU64, at: u64, times: usize) -> u64 {
        offset.store(at, Ordering::SeqCst);
        let mut generation = 0;
        for _ in 0..times {
            generation = source.current().await.unwrap().1;
        }
        generation
    }

    #[tokio::test]
    async fn refresh_before_ahead_of_expiry_for_long_tokens() {
        let (_, url) = endpoint(3600).await;
        let offset = Arc::new(AtomicU64::new(0));
        let source = source(url, 60, offset.clone());
        assert_eq!(calls_at(&source, &offset, 0, 3).await, 1);
        assert_eq!(calls_at(&source, &offset, 3539, 3).await, 1);
        assert_eq!(calls_at(&source, &offset, 3540, 3).await, 2);
        assert_eq!(source.token_requests(), 2);
    }

    #[tokio::test]
    async fn refresh_before_above_lifetime_refreshes_at_half_life() {
        let (_, url) = endpoint(20).await;
        let offset = Arc::new(AtomicU64::new(0));
        let source = source(url, 60, offset.clone());
        assert_eq!(calls_at(&source, &offset, 0, 1).await, 1);
        assert_eq!(calls_at(&source, &offset, 9, 100).await, 1);
        assert_eq!(calls_at(&source, &offset, 10, 100).await, 2);
        assert_eq!(calls_at(&source, &offset, 19, 100).await, 2);
        assert_eq!(calls_at(&source, &offset, 20, 100).await, 3);
        assert_eq!(source.token_requests(), 3);
    }

    #[tokio::test]
    async fn readers_keep_the_valid_token_while_a_proactive_refresh_is_in_flight() {
        let (server, url) = endpoint(20).await;
        let offset = Arc::new(AtomicU64::new(0));
        let source = Arc::new(source(url, 60, offset.clone()));
        assert_eq!(calls_at(&source, &offset, 0, 1).await, 1);
        server.gate.store(true, Ordering::SeqCst);
        offset.store(12, Ordering::SeqCst);
        let refresher = tokio::spawn({
            let source = source.clone();
            async move { source.current().await.unwrap().1 }
        });
        server.arrived.notified().await;
        // The token request is held by the server: a reader must not wait for it.
        let (token, generation) = source.current().await.unwrap();
        assert_eq!((token.expose(), generation), ("at-1", 1));
        server.release.add_permits(1);
        assert_eq!(refresher.await.unwrap(), 2);
        assert_eq!(source.current().await.unwrap().0.expose(), "at-2");
    }

    /// Issue 14 item 8: in the refresh window the token is still valid, so
    /// a failing token endpoint must not fail the request; the early
    /// refresh is tried again only after a back-off.
    #[tokio::test]
    async fn a_failed_early_refresh_keeps_the_valid_token_and_backs_off() {
        let (server, url) = endpoint(3600).await;
        let offset = Arc::new(AtomicU64::new(0));
        let source = source(url, 60, offset.clone());
        assert_eq!(calls_at(&source, &offset, 0, 1).await, 1);

        server.answer.store(UNAVAILABLE, Ordering::SeqCst);
        offset.store(3540, Ordering::SeqCst);
        let (token, generation) = source.current().await.unwrap();
        assert_eq!((token.expose(), generation), ("at-1", 1));
        assert_eq!(source.token_requests(), 1 + 4, "one refresh, 4 attempts");
        // Backing off (a quarter of the 60 s left): no request per call.
        assert_eq!(calls_at(&source, &offset, 3554, 10).await, 1);
        assert_eq!(source.token_requests(), 5);

        server.answer.store(GARBAGE, Ordering::SeqCst);
        assert_eq!(calls_at(&source, &offset, 3555, 10).await, 1);
        assert_eq!(source.token_requests(), 6);

        server.answer.store(ANSWER, Ordering::SeqCst);
        assert_eq!(
            calls_at(&source, &offset, 3565, 1).await,
            1,
            "still backing off"
        );
        assert_eq!(calls_at(&source, &offset, 3567, 1).await, 2);
        assert_eq!(source.current().await.unwrap().0.expose(), "at-2");
    }

    /// Once expired, a failing refresh fails the caller; it does not stick:
    /// the endpoint recovering means the next call gets a token.
    #[tokio::test]
    async fn an_expired_token_fails_while_the_endpoint_fails_then_recovers() {
        let (server, url) = endpoint(3600).await;
        let offset = Arc::new(AtomicU64::new(0));
        let source = source(url, 60, offset.clone());
        assert_eq!(calls_at(&source, &offset, 0, 1).await, 1);

        offset.store(3600, Ordering::SeqCst);
        server.answer.store(UNAVAILABLE, Ordering::SeqCst);
        let error = source.current().await.unwrap_err().to_string();
        assert!(error.contains("returned 503 after 4 attempt(s)"), "{error}");
        server.answer.store(GARBAGE, Ordering::SeqCst);
        let error = source.current().await.unwrap_err().to_string();
        assert!(error.contains("unusable token response"), "{error}");

        server.answer.store(ANSWER, Ordering::SeqCst);
        let (token, generation) = source.current().await.unwrap();
        assert_eq!((token.expose(), generation), ("at-2", 2));
    }

    /// semantics.md: 64 tasks that find the token expired cause exactly one
    /// token request, and all of them get its token.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sixty_four_tasks_with_an_expired_token_cause_one_token_request() {
        let (server, url) = endpoint(20).await;
        let offset = Arc::new(AtomicU64::new(0));
        let source = Arc::new(source(url, 0, offset.clone()));
        assert_eq!(calls_at(&source, &offset, 0, 1).await, 1);
        server.gate.store(true, Ordering::SeqCst);
        offset.store(20, Ordering::SeqCst);

        let start = Arc::new(tokio::sync::Barrier::new(64));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (source, start) = (source.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let (token, generation) = source.current().await.unwrap();
                    (token.expose().to_string(), generation)
                })
            })
            .collect();
        server.arrived.notified().await;
        server.release.add_permits(64);
        for task in tasks {
            assert_eq!(task.await.unwrap(), ("at-2".to_string(), 2));
        }
        assert_eq!(source.token_requests(), 2);
    }

    /// `expires_in: 0` meant one token request per API request; a huge one
    /// must neither overflow nor be believed past a year.
    #[tokio::test]
    async fn zero_or_huge_expires_in_neither_floods_nor_overflows() {
        let (server, url) = endpoint(0).await;
        let offset = Arc::new(AtomicU64::new(0));
        let source = source(url, 60, offset.clone());
        assert_eq!(calls_at(&source, &offset, 0, 50).await, 1);
        assert_eq!(source.token_requests(), 1);

        server.expires_in.store(10u64.pow(12), Ordering::SeqCst);
        const DAY: u64 = 86_400;
        // 0 read as "not stated": the default lifetime (1 h) applies.
        assert_eq!(calls_at(&source, &offset, 3600, 1).await, 2);
        assert_eq!(calls_at(&source, &offset, 365 * DAY, 3).await, 2);
        assert_eq!(calls_at(&source, &offset, 367 * DAY, 1).await, 3);
    }
}
