//! The HTTP layer against real local servers: retries, limits, redirects,
//! credentials and what errors show.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apisync::auth::{Credential, NoTokenStore};
use apisync::fetch::{
    DecodeError, FetchError, FetchErrorKind, HttpClient, HttpOptions, PageRequest, PageResponse,
    RequestContext,
};
use apisync::plan::*;
use apisync::secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "t0k-very-secret";

fn job(max_attempts: u32) -> JobPlan {
    JobPlan {
        name: "orders".into(),
        file: PathBuf::from("jobs/orders.toml"),
        description: None,
        auth: None,
        schedule: None,
        depends_on: vec![],
        tags: vec![],
        request: RequestPlan {
            url: "http://127.0.0.1/".into(),
            method: HttpMethod::Get,
            query: vec![],
            headers: vec![],
            body: None,
            timeout: Duration::from_secs(10),
            env: vec![],
            missing_env: vec![],
        },
        pagination: PaginationPlan {
            kind: PaginationKind::None,
            has_more_path: None,
            stop: None,
            max_pages: 0,
            allow_cross_origin: false,
        },
        records: RecordsPlan {
            path: String::new(),
            primary_key: vec![],
            partition_key: vec![],
            error_path: None,
            error_retry: false,
            max_page_bytes: 1 << 20,
            single: false,
        },
        incremental: None,
        partitions: None,
        output: OutputPlan {
            table: "orders".into(),
            mode: WriteMode::Merge,
            columns: vec![],
        },
        retry: RetryPlan {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_elapsed: Duration::from_secs(60),
        },
    }
}

fn client(concurrency: usize) -> HttpClient {
    HttpClient::new(&HttpOptions {
        concurrency,
        user_agent: "apisync-test".into(),
        hosts: Default::default(),
    })
    .unwrap()
}

fn credential(client: &HttpClient, plan: AuthPlan) -> Arc<Credential> {
    let store = Arc::new(NoTokenStore);
    Arc::new(Credential::new("shop", &plan, &client.token_client(), store).unwrap())
}

fn bearer(client: &HttpClient) -> Arc<Credential> {
    let token = SecretSource::Plain(Secret::new(TOKEN));
    credential(client, AuthPlan::Bearer { token })
}

fn get(url: &str) -> PageRequest {
    PageRequest {
        method: HttpMethod::Get,
        url: Url::parse(url).unwrap(),
        headers: vec![],
        body: None,
        secrets: Default::default(),
    }
}

fn body_text(page: &PageResponse) -> Result<String, DecodeError> {
    Ok(String::from_utf8_lossy(&page.body).into_owned())
}

async fn fetch_text(
    client: &HttpClient,
    job: &JobPlan,
    url: &str,
    credential: Option<Arc<Credential>>,
) -> Result<String, FetchError> {
    let req = get(url);
    let ctx = RequestContext::new(job, &req.url, credential);
    client.fetch(&ctx, &req, body_text).await
}

async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
    server.received_requests().await.unwrap_or_default()
}

#[tokio::test]
async fn retryable_statuses_are_retried_then_succeed() {
    let http = client(4);
    for status in [500, 502, 503, 504, 429, 408, 425] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(status))
            .up_to_n_times(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string("[1]"))
            .mount(&server)
            .await;
        let body = fetch_text(&http, &job(6), &server.uri(), None).await;
        assert_eq!(body.unwrap(), "[1]", "status {status}");
        assert_eq!(requests(&server).await.len(), 3, "status {status}");
    }
}

#[tokio::test]
async fn not_found_fails_at_once_with_status_url_and_body_start() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/orders"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no such orders here"))
        .mount(&server)
        .await;
    let url = format!("{}/v1/orders?page=3", server.uri());
    let err = fetch_text(&client(2), &job(6), &url, None)
        .await
        .unwrap_err();
    assert_eq!(requests(&server).await.len(), 1);
    assert!(err.is_client_error());
    let FetchErrorKind::Status {
        status, body_start, ..
    } = &err.kind
    else {
        panic!("{err:?}")
    };
    assert_eq!((*status, body_start.as_str()), (404, "no such orders here"));
    let text = err.to_string();
    assert!(
        text.contains(&url) && text.contains("returned 404"),
        "{text}"
    );
}

#[tokio::test]
async fn status_retries_end_with_attempt_count_and_honour_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "1"))
        .mount(&server)
        .await;
    let err = fetch_text(&client(2), &job(3), &server.uri(), None)
        .await
        .unwrap_err();
    assert_eq!(requests(&server).await.len(), 3);
    assert!(
        matches!(
            err.kind,
            FetchErrorKind::Status {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_client_error());
}

/// A server whose first answer is `status` with `Retry-After: retry_after`
/// and every later one a page.
async fn refuses_once_then_answers(status: u16, retry_after: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(status).insert_header("Retry-After", retry_after))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
        .mount(&server)
        .await;
    server
}

/// semantics.md: `Retry-After` is honoured, capped by `max_backoff`. With
/// the cap far above the server's ask, the retry waits the whole second.
/// (A lower bound only: a sleep never ends early, so a slow machine cannot
/// fail it.)
#[tokio::test]
async fn retry_after_below_max_backoff_is_waited_out_in_full() {
    let server = refuses_once_then_answers(503, "1").await;
    let mut job = job(3);
    job.retry.max_backoff = Duration::from_secs(30);
    let started = std::time::Instant::now();
    fetch_text(&client(2), &job, &server.uri(), None)
        .await
        .expect("the retry succeeds");
    assert_eq!(requests(&server).await.len(), 2);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "the retry came after {waited:?}, before the server's Retry-After of 1 s"
    );
}

/// The other half: a `Retry-After` of an hour is cut to `max_backoff`, so
/// the retry comes (the guard is only there to end a broken run).
#[tokio::test]
async fn retry_after_above_max_backoff_is_cut_to_it() {
    let server = refuses_once_then_answers(429, "3600").await;
    let mut job = job(3);
    job.retry.max_backoff = Duration::from_millis(50);
    let fetched = tokio::time::timeout(
        Duration::from_secs(600),
        fetch_text(&client(2), &job, &server.uri(), None),
    )
    .await
    .expect("the retry waits max_backoff, not the hour the server asked");
    fetched.expect("the retry succeeds");
    assert_eq!(requests(&server).await.len(), 2);
}

/// A server whose first connection sends half a body and closes; the next
/// gets the whole page. Returns the base URL and the connection count.
async fn half_body_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let reply: &[u8] = if n == 0 {
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n[1,2,"
            } else {
                b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\n[1,2,3]"
            };
            let _ = socket.write_all(reply).await;
            let _ = socket.shutdown().await;
        }
    });
    (format!("http://{addr}/"), connections)
}

#[tokio::test]
async fn a_body_cut_off_midway_is_fetched_again() {
    let (url, connections) = half_body_server().await;
    let body = fetch_text(&client(2), &job(3), &url, None).await.unwrap();
    assert_eq!(body, "[1,2,3]");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_body_over_max_page_bytes_fails_without_retry() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(2000)))
        .mount(&server)
        .await;
    let mut job = job(6);
    job.records.max_page_bytes = 1000;
    let err = fetch_text(&client(2), &job, &server.uri(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::TooLarge { limit: 1000 }),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn retryable_decode_errors_refetch_the_page_and_others_fail_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"trunc"))
        .mount(&server)
        .await;
    let http = client(2);
    let req = get(&server.uri());
    let ctx = RequestContext::new(&job(4), &req.url, None);
    let calls = AtomicUsize::new(0);
    let flaky = |_: &PageResponse| match calls.fetch_add(1, Ordering::SeqCst) {
        0 => Err(DecodeError {
            message: "truncated JSON".into(),
            retryable: true,
        }),
        _ => Ok("decoded"),
    };
    assert_eq!(http.fetch(&ctx, &req, flaky).await.unwrap(), "decoded");
    assert_eq!(requests(&server).await.len(), 2);

    let fatal = |_: &PageResponse| -> Result<(), DecodeError> {
        Err(DecodeError {
            message: "records path /data is not an array".into(),
            retryable: false,
        })
    };
    let err = http.fetch(&ctx, &req, fatal).await.unwrap_err();
    assert!(matches!(err.kind, FetchErrorKind::Decode(_)), "{err:?}");
    assert_eq!(requests(&server).await.len(), 3);

    let always = |_: &PageResponse| -> Result<(), DecodeError> {
        Err(DecodeError {
            message: "truncated JSON".into(),
            retryable: true,
        })
    };
    let err = http.fetch(&ctx, &req, always).await.unwrap_err();
    assert!(err.to_string().contains("truncated JSON"), "{err}");
    assert_eq!(requests(&server).await.len(), 3 + 4);
}

#[tokio::test]
async fn bearer_goes_to_the_same_origin_and_401_fails_after_one_attempt() {
    let server = MockServer::start().await;
    Mock::given(path("/ok"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    Mock::given(path("/expired"))
        .respond_with(ResponseTemplate::new(401).insert_header(
            "WWW-Authenticate",
            r#"Bearer realm="api", error="invalid_token", error_description="token expired""#,
        ))
        .mount(&server)
        .await;
    let http = client(2);
    let cred = bearer(&http);
    let ok = format!("{}/ok", server.uri());
    fetch_text(&http, &job(6), &ok, Some(cred.clone()))
        .await
        .unwrap();
    let seen = requests(&server).await;
    let auth = seen[0].headers.get("authorization").unwrap();
    assert_eq!(auth.to_str().unwrap(), format!("Bearer {TOKEN}"));

    let expired = format!("{}/expired", server.uri());
    let err = fetch_text(&http, &job(6), &expired, Some(cred))
        .await
        .unwrap_err();
    assert_eq!(requests(&server).await.len(), 2, "one request for /expired");
    let FetchErrorKind::Unauthorized { detail } = &err.kind else {
        panic!("{err:?}")
    };
    assert!(detail.contains("invalid_token: token expired"), "{detail}");
    assert!(detail.contains("cannot be refreshed"), "{detail}");
    assert!(!format!("{err} {err:?}").contains(TOKEN));
}

#[tokio::test]
async fn forbidden_names_the_missing_scope_and_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).insert_header(
            "WWW-Authenticate",
            r#"Bearer error="insufficient_scope", scope="orders:read""#,
        ))
        .mount(&server)
        .await;
    let http = client(2);
    let err = fetch_text(&http, &job(6), &server.uri(), Some(bearer(&http)))
        .await
        .unwrap_err();
    assert_eq!(requests(&server).await.len(), 1);
    assert!(
        matches!(&err.kind, FetchErrorKind::Forbidden { scope: Some(s), .. } if s == "orders:read"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("lacks scope \"orders:read\""),
        "{err}"
    );
}

#[tokio::test]
async fn credentials_over_plain_http_go_only_to_loopback() {
    let http = client(2);
    let err = fetch_text(
        &http,
        &job(6),
        "http://example.invalid/v1",
        Some(bearer(&http)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::InsecureTransport),
        "{err:?}"
    );
}

/// An `Authorization` header the job wrote itself follows the same rule as
/// the auth: never over plain http to a host that is not loopback (refused
/// before connecting: the host does not exist), still sent to loopback.
#[tokio::test]
async fn credential_headers_of_the_job_go_over_plain_http_only_to_loopback() {
    let http = client(2);
    let with_header = |url: &str| {
        let mut req = get(url);
        req.headers = vec![("Authorization".into(), "Bearer job-written-9f".into())];
        req
    };
    let req = with_header("http://example.invalid/v1");
    let ctx = RequestContext::new(&job(6), &req.url, None);
    let err = http.fetch(&ctx, &req, body_text).await.unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::InsecureTransport),
        "{err:?}"
    );

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    let req = with_header(&server.uri());
    let ctx = RequestContext::new(&job(6), &req.url, None);
    assert_eq!(http.fetch(&ctx, &req, body_text).await.unwrap(), "ok");
    let seen = requests(&server).await;
    assert_eq!(
        seen[0].headers.get("authorization").unwrap(),
        "Bearer job-written-9f"
    );
}

#[tokio::test]
async fn api_key_in_the_query_is_sent_but_redacted_in_errors() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(400).set_body_string("bad page"))
        .mount(&server)
        .await;
    let http = client(2);
    let key = AuthPlan::ApiKey {
        placement: ApiKeyPlacement::Query("api_key".into()),
        key: SecretSource::Plain(Secret::new("s3cret-key")),
    };
    let cred = credential(&http, key);
    let url = format!("{}/v1?page=2", server.uri());
    let err = fetch_text(&http, &job(6), &url, Some(cred.clone()))
        .await
        .unwrap_err();
    let seen = requests(&server).await;
    assert_eq!(seen[0].url.query(), Some("page=2&api_key=s3cret-key"));
    assert!(!format!("{err} {err:?}").contains("s3cret-key"), "{err}");

    let with_key = Url::parse(&format!("{url}&api_key=s3cret-key")).unwrap();
    let ctx = RequestContext::new(&job(6), &with_key, Some(cred));
    assert_eq!(ctx.redact(&with_key), format!("{url}&api_key=[redacted]"));
    assert_eq!(ctx.strip_secret_params(&with_key).as_str(), url);
}

#[tokio::test]
async fn redirects_to_another_origin_are_refused_or_followed_bare() {
    let other = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("elsewhere"))
        .mount(&other)
        .await;
    let origin = MockServer::start().await;
    Mock::given(path("/moved"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("Location", format!("{}/x", other.uri())),
        )
        .mount(&origin)
        .await;
    Mock::given(path("/local"))
        .respond_with(ResponseTemplate::new(307).insert_header("Location", "/here"))
        .mount(&origin)
        .await;
    Mock::given(path("/here"))
        .respond_with(ResponseTemplate::new(200).set_body_string("here"))
        .mount(&origin)
        .await;
    let http = client(2);
    let moved = format!("{}/moved", origin.uri());
    let err = fetch_text(&http, &job(6), &moved, Some(bearer(&http)))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::CrossOrigin { .. }),
        "{err:?}"
    );
    assert!(requests(&other).await.is_empty());

    let mut allowing = job(6);
    allowing.pagination.allow_cross_origin = true;
    let body = fetch_text(&http, &allowing, &moved, Some(bearer(&http))).await;
    assert_eq!(body.unwrap(), "elsewhere");
    let seen = requests(&other).await;
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("authorization").is_none());

    let local = format!("{}/local", origin.uri());
    let body = fetch_text(&http, &job(6), &local, Some(bearer(&http))).await;
    assert_eq!(body.unwrap(), "here");
    let last = requests(&origin).await.pop().unwrap();
    assert_eq!(last.url.path(), "/here");
    assert!(last.headers.get("authorization").is_some());
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_on_every_attempt() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let mut job = job(2);
    job.request.timeout = Duration::from_millis(200);
    let err = fetch_text(&client(2), &job, &server.uri(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, FetchErrorKind::Timeout { attempts: 2 }),
        "{err:?}"
    );
}

/// Counts requests in flight; each waits at `gate` until the test opens it.
#[derive(Clone)]
struct Gauge {
    in_flight: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    arrivals: Arc<tokio::sync::watch::Sender<usize>>,
    gate: Arc<tokio::sync::Semaphore>,
}

async fn gauged(axum::extract::State(gauge): axum::extract::State<Gauge>) -> &'static str {
    let now = gauge.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    gauge.max.fetch_max(now, Ordering::SeqCst);
    gauge.arrivals.send_modify(|n| *n += 1);
    if let Ok(permit) = gauge.gate.acquire().await {
        permit.forget();
    }
    gauge.in_flight.fetch_sub(1, Ordering::SeqCst);
    "[]"
}

#[tokio::test]
async fn no_more_requests_in_flight_than_the_concurrency_limit() {
    let (arrivals, mut arrived) = tokio::sync::watch::channel(0);
    let gauge = Gauge {
        in_flight: Arc::default(),
        max: Arc::default(),
        arrivals: Arc::new(arrivals),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let app = axum::Router::new()
        .route("/{page}", axum::routing::get(gauged))
        .with_state(gauge.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = client(2);
    let job = job(1);
    let fetches = (0..6).map(|page| {
        let url = format!("http://{addr}/{page}");
        let (http, job) = (&http, &job);
        async move { fetch_text(http, job, &url, None).await }
    });
    let release = async {
        arrived.wait_for(|n| *n >= 2).await.unwrap();
        // Give a broken limiter every chance to let a third request through.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        gauge.gate.add_permits(6);
    };
    let (results, ()) = tokio::join!(futures::future::join_all(fetches), release);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(*arrived.borrow(), 6);
    assert_eq!(gauge.max.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn see_other_turns_a_post_into_a_get_and_307_keeps_it() {
    let server = MockServer::start().await;
    Mock::given(path("/search"))
        .respond_with(ResponseTemplate::new(303).insert_header("Location", "/results"))
        .mount(&server)
        .await;
    Mock::given(path("/search2"))
        .respond_with(ResponseTemplate::new(307).insert_header("Location", "/results"))
        .mount(&server)
        .await;
    Mock::given(path("/results"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;
    let http = client(2);
    for (start, expected) in [("/search", "GET"), ("/search2", "POST")] {
        let req = PageRequest {
            method: HttpMethod::Post,
            url: Url::parse(&format!("{}{start}", server.uri())).unwrap(),
            headers: vec![("X-Trace".into(), "1".into())],
            body: Some(serde_json::json!({"q": "all"})),
            secrets: Default::default(),
        };
        let ctx = RequestContext::new(&job(2), &req.url, None);
        http.fetch(&ctx, &req, body_text).await.unwrap();
        let last = requests(&server).await.pop().unwrap();
        assert_eq!(last.url.path(), "/results");
        assert_eq!(last.method.as_str(), expected);
        assert_eq!(last.body.is_empty(), expected == "GET");
        assert!(last.headers.get("x-trace").is_some());
    }
}
