//! `TokenSource`: the one token of a named OAuth2 auth, shared by every task.
//!
//! Reading a valid token takes only a short `std` read lock on a snapshot,
//! never the lock a refresh holds across its token request. Refreshes are
//! single-flight behind a tokio mutex: tasks that find the token expired
//! wait for the one refresh in flight and then use its result (token or
//! error) instead of asking again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

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

/// State only the task holding the refresh lock touches.
#[derive(Debug, Default)]
struct Flight {
    /// The latest rotated refresh token, for stores that keep nothing.
    rotated: Option<Secret>,
    /// The message of the last refresh, if it failed.
    failure: Option<String>,
    /// A final error (bad client, revoked grant): asking again cannot help.
    fatal: Option<String>,
}

/// The token source of one named OAuth2 auth.
pub struct TokenSource {
    auth: String,
    endpoint: Endpoint,
    /// The configured refresh token; `None` for client credentials.
    configured_refresh: Option<Secret>,
    refresh_before: Duration,
    client: reqwest::Client,
    store: Arc<dyn TokenStore>,
    snapshot: RwLock<Option<Arc<Token>>>,
    flight: Mutex<Flight>,
    /// Refreshes finished (ok or not), so a waiter can tell one happened.
    finished: AtomicU64,
    requests: AtomicU64,
    clock: Clock,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("auth", &self.auth)
            .field("token_url", &self.endpoint.display_url())
            .field("generation", &self.generation())
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
        Ok(TokenSource {
            auth: name.to_string(),
            endpoint: Endpoint::new(name, oauth)?,
            configured_refresh: refresh,
            refresh_before: oauth.refresh_before,
            client,
            store,
            snapshot: RwLock::new(None),
            flight: Mutex::new(Flight::default()),
            finished: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            clock: Clock::default(),
        })
    }

    #[cfg(test)]
    pub(crate) fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The token to send and its generation. Cheap while the token is fresh;
    /// past its refresh point one task refreshes while the others keep using
    /// the still-valid token; once expired, everyone waits for one refresh.
    pub async fn current(&self) -> Result<(Secret, u64), AuthError> {
        let seen = self.snapshot();
        let now = self.clock.now();
        if let Some(token) = &seen {
            if now < token.refresh_at {
                return Ok(pair(token));
            }
            if now < token.expires_at {
                let Ok(flight) = self.flight.try_lock() else {
                    return Ok(pair(token));
                };
                let token = self
                    .refresh_if_still(flight, token.generation, None)
                    .await?;
                return Ok(pair(&token));
            }
        }
        let finished = self.finished.load(Ordering::Acquire);
        let flight = self.flight.lock().await;
        let generation = seen.map_or(0, |token| token.generation);
        let token = self
            .refresh_if_still(flight, generation, Some(finished))
            .await?;
        Ok(pair(&token))
    }

    /// A request sent with `generation` was refused (401). Refresh if that
    /// is still the current token; concurrent calls cause one refresh.
    pub async fn invalidate(&self, generation: u64) -> Result<RefreshOutcome, AuthError> {
        let finished = self.finished.load(Ordering::Acquire);
        let flight = self.flight.lock().await;
        if self.generation() != generation {
            return Ok(RefreshOutcome::AlreadyNewer);
        }
        self.refresh_if_still(flight, generation, Some(finished))
            .await?;
        Ok(RefreshOutcome::Refreshed)
    }

    /// Token requests sent so far, retries included.
    pub fn token_requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
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

    /// Holding the refresh lock: reuse what a refresh finished while we
    /// waited (its token, or its error when it failed after `finished` was
    /// read), else refresh.
    async fn refresh_if_still(
        &self,
        mut flight: MutexGuard<'_, Flight>,
        generation: u64,
        finished: Option<u64>,
    ) -> Result<Arc<Token>, AuthError> {
        if let Some(token) = self.snapshot().filter(|t| t.generation != generation) {
            return Ok(token);
        }
        if let Some(message) = &flight.fatal {
            return Err(self.error(message.clone()));
        }
        let waited_for_one = finished.is_some_and(|f| f != self.finished.load(Ordering::Acquire));
        if let (true, Some(message)) = (waited_for_one, &flight.failure) {
            return Err(self.error(message.clone()));
        }
        self.refresh(&mut flight).await
    }

    async fn refresh(&self, flight: &mut Flight) -> Result<Arc<Token>, AuthError> {
        let result = match &self.configured_refresh {
            None => {
                self.endpoint
                    .request(
                        &self.client,
                        &Grant::ClientCredentials,
                        &self.clock,
                        &self.requests,
                    )
                    .await
            }
            Some(configured) => self.refresh_grant(flight, configured).await,
        };
        let outcome = match result {
            Ok(issued) => {
                flight.failure = None;
                Ok(self.install(issued))
            }
            Err(error) => {
                let message = error.message(&self.endpoint.display_url());
                tracing::warn!(auth = %self.auth, %message, "token refresh failed");
                if !error.is_transient() {
                    flight.fatal = Some(message.clone());
                }
                flight.failure = Some(message.clone());
                Err(self.error(message))
            }
        };
        self.finished.fetch_add(1, Ordering::Release);
        outcome
    }

    /// The refresh token grant under the store's lock: the stored (rotated)
    /// refresh token wins over the configured one, and a new one is
    /// committed before the new access token is handed out.
    async fn refresh_grant(
        &self,
        flight: &mut Flight,
        configured: &Secret,
    ) -> Result<Issued, TokenError> {
        let guard = self
            .store
            .begin_refresh(&self.auth)
            .await
            .map_err(|source| TokenError::Store {
                action: "lock",
                source,
            })?;
        let refresh = guard
            .stored()
            .or_else(|| flight.rotated.clone())
            .unwrap_or_else(|| configured.clone());
        crate::secret::register(&refresh);
        let issued = self
            .endpoint
            .request(
                &self.client,
                &Grant::Refresh(&refresh),
                &self.clock,
                &self.requests,
            )
            .await?;
        guard
            .finish(issued.rotated.clone())
            .await
            .map_err(|source| TokenError::Store {
                action: "save",
                source,
            })?;
        if let Some(rotated) = &issued.rotated {
            crate::secret::register(rotated);
            flight.rotated = Some(rotated.clone());
        }
        Ok(issued)
    }

    fn install(&self, issued: Issued) -> Arc<Token> {
        crate::secret::register(&issued.access);
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
    use axum::routing::post;

    use super::*;
    use crate::auth::NoTokenStore;
    use crate::plan::{ClientAuthMethod, OAuthPlan, SecretSource};

    #[derive(Default)]
    struct Endpoint {
        issued: AtomicU64,
        expires_in: AtomicU64,
        /// While set, token answers wait for `release`.
        gate: std::sync::atomic::AtomicBool,
        arrived: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    async fn token(State(state): State<Arc<Endpoint>>) -> axum::Json<serde_json::Value> {
        let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
        if state.gate.load(Ordering::SeqCst) {
            state.arrived.notify_one();
            state.release.notified().await;
        }
        axum::Json(serde_json::json!({
            "access_token": format!("at-{n}"),
            "token_type": "bearer",
            "expires_in": state.expires_in.load(Ordering::SeqCst),
        }))
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
        server.release.notify_one();
        assert_eq!(refresher.await.unwrap(), 2);
        assert_eq!(source.current().await.unwrap().0.expose(), "at-2");
    }
}
