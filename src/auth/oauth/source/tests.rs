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
    let clock = Clock::manual(move || base + Duration::from_secs(offset.load(Ordering::SeqCst)));
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

/// A 401 on a token that was itself a refresh (revoked again) refreshes
/// again; a 401 on a token already replaced refreshes nothing. Killed the
/// mutant that pins the current generation at 1, under which the second
/// revocation would be answered "already newer" and never refreshed.
#[tokio::test]
async fn every_revoked_generation_is_refreshed_once_and_a_replaced_one_never() {
    let (_, url) = endpoint(3600).await;
    let offset = Arc::new(AtomicU64::new(0));
    let source = source(url, 60, offset.clone());
    let first = source.current().await.unwrap().1;
    assert_eq!(first, 1);
    assert_eq!(
        source.invalidate(first).await.unwrap(),
        RefreshOutcome::Refreshed
    );
    let second = source.current().await.unwrap().1;
    assert_eq!(second, 2);
    assert_eq!(
        source.invalidate(second).await.unwrap(),
        RefreshOutcome::Refreshed
    );
    assert_eq!(
        source.invalidate(first).await.unwrap(),
        RefreshOutcome::AlreadyNewer
    );
    assert_eq!(source.current().await.unwrap().1, 3);
    assert_eq!(source.token_requests(), 3);
}

/// A caller that read generation 1, and reaches the lock only after another
/// task's refresh finished, takes the new token instead of starting a second
/// refresh: in `current` (expired token) and in `early` (refresh window).
/// The window between reading and locking cannot be forced from outside, so
/// the test calls the two steps after it directly.
#[tokio::test]
async fn a_caller_that_read_an_older_token_takes_the_newer_one_without_a_request() {
    let (_, url) = endpoint(100).await;
    let offset = Arc::new(AtomicU64::new(0));
    let source = source(url, 10, offset.clone());
    assert_eq!(calls_at(&source, &offset, 0, 1).await, 1);
    let first = source.shared.snapshot().unwrap();
    assert_eq!(
        source.invalidate(1).await.unwrap(),
        RefreshOutcome::Refreshed
    );
    assert_eq!(source.token_requests(), 2);

    let (token, started) = source.refreshed(first.generation).await.unwrap();
    assert_eq!((token.generation, started), (2, false));
    let early = source.early(&first, source.shared.clock.now()).await;
    assert_eq!(early.generation, 2);
    assert_eq!(source.token_requests(), 2, "no second refresh was started");
}
