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
mod tests;
