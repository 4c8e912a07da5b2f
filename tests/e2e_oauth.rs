//! OAuth2 end to end: the built binary against a real token endpoint and a
//! real API on 127.0.0.1 (tests/common/oauth_server.rs). The API enforces
//! the tokens it issued (expiry, revocation), so a sync only completes when
//! the binary refreshes as it should. Library-level behaviour (form
//! encoding details, retries of the token endpoint, the generation check in
//! isolation) is in tests/oauth.rs; this suite checks it through `run`.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::oauth_server::{
    Behaviour, CLIENT_ID, CLIENT_SECRET, FIRST_REFRESH, Foreign, OAuthServer,
};
use common::{Project, describe, text};

const CC: &str = "oauth2_client_credentials";
const RT: &str = "oauth2_refresh_token";

/// A project with one auth "acme" of `kind` and one job "items" on `server`.
fn project(server: &OAuthServer, settings: &str, kind: &str, partitions: Option<usize>) -> Project {
    let project = Project::new();
    project.config(&format!(
        "{settings}\n{}",
        server.auth_table("acme", kind, "basic")
    ));
    project.job("items", &server.job("acme", partitions));
    project
}

/// A run that must fail (exit 1): everything it printed.
async fn failed_run(server: &OAuthServer, project: &Project, args: &[&str]) -> String {
    let output = server.run(project, args).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    text(&output)
}

/// The error line of a page the API refused.
fn refused(server: &OAuthServer, page: u32, status: u16) -> String {
    format!(
        "job \"items\": GET {}/items/all?page={page} was refused with {status}",
        server.base()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_streams_holding_an_expired_token_cause_exactly_one_token_request() {
    // The first token lives 4 s; the API answers page 1 of every partition
    // only once all 64 have arrived and that token has expired.
    let server = OAuthServer::start(Behaviour {
        pages: 2,
        page_size: 1,
        lifetimes: vec![Duration::from_secs(4), Duration::from_secs(3600)],
        hold_first_pages: Some(64),
        ..Behaviour::default()
    })
    .await;
    let project = project(&server, "concurrency = 64", CC, Some(64));
    let output = server
        .run(&project, &["run", "--metrics-file", "run.prom"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    // The metrics count the job's token requests too.
    let metrics = std::fs::read_to_string(project.path().join("run.prom")).expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"apisync_job_token_requests{apisync_job="items"} 2"#),
        "{metrics}"
    );

    let tokens = server.access_tokens();
    let requests = server.api_requests();
    let carried = |page: u64| server.tokens_on_page(page);
    // 64 tasks asked for a first token at once: one request; then 64 tasks
    // found it expired at once: one more.
    assert_eq!(server.token_requests().len(), 2, "{tokens:?}");
    assert_eq!(carried(1), vec![Some(tokens[0].clone()); 64]);
    assert_eq!(carried(2), vec![Some(tokens[1].clone()); 64]);
    assert!(requests.iter().all(|r| r.status == 200), "{requests:?}");
    assert_eq!(project.rows("items").len(), server.expected_rows(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_tokens_are_refreshed_about_once_a_second_and_no_page_fails() {
    // 30 pages of 100 ms each: the sync outlives many tokens.
    let server = OAuthServer::start(Behaviour {
        pages: 30,
        lifetimes: vec![Duration::from_secs(1)],
        page_delay: Duration::from_millis(100),
        ..Behaviour::default()
    })
    .await;
    let project = project(&server, "", CC, None);
    let started = Instant::now();
    let output = server.run(&project, &["run"]).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(project.rows("items").len(), server.expected_rows(1));

    // Every page was answered 200 exactly once: none failed or was skipped.
    let answered: Vec<_> = server
        .api_requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    assert_eq!(
        answered.iter().map(|r| r.page).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    // The server accepts a token for one second from when it issued it:
    // pages spread over `span` need about span + 1 tokens. The bound is one
    // lower because the server stamps a page when it answers, after the
    // token check, so on a loaded machine the last page can be stamped past
    // the expiry of a token it was admitted with.
    let span = answered[29].at - answered[0].at;
    let token_requests = server.token_requests();
    assert!(
        token_requests.iter().all(|r| r.status == 200),
        "{token_requests:?}"
    );
    let count = token_requests.len();
    assert!(span >= Duration::from_millis(2900), "{span:?}");
    assert!(
        count as u64 >= span.as_secs() && count >= 2,
        "{count} token requests over {span:?}"
    );
    // Each token is replaced only once it expired (refresh_before = 0s):
    // never more than one per second of run time.
    assert!(
        count as f64 <= elapsed + 2.0,
        "{count} token requests in {elapsed:.1} s"
    );
}

/// A token revoked at page 3 (the 401 with or without a challenge):
/// exactly one refresh, page 3 retried with the new token, nothing lost.
async fn a_revoked_token_is_refreshed_once(bare_401: bool) {
    let server = OAuthServer::start(Behaviour {
        pages: 4,
        revoke_at_page: Some(3),
        bare_401,
        ..Behaviour::default()
    })
    .await;
    let project = project(&server, "", CC, None);
    let output = server.run(&project, &["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(project.rows("items").len(), server.expected_rows(1));

    let tokens = server.access_tokens();
    assert_eq!(tokens.len(), 2, "one refresh: {tokens:?}");
    let seen: Vec<_> = server
        .api_requests()
        .into_iter()
        .map(|r| (r.page, r.status, r.token.unwrap_or_default()))
        .collect();
    let (first, second) = (tokens[0].clone(), tokens[1].clone());
    assert_eq!(
        seen,
        [
            (1, 200, first.clone()),
            (2, 200, first.clone()),
            (3, 401, first),
            (3, 200, second.clone()),
            (4, 200, second),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_mid_sync_is_refreshed_once_and_the_sync_continues() {
    a_revoked_token_is_refreshed_once(false).await;
}

/// semantics.md: a 401 is refreshed once "with or without
/// `WWW-Authenticate`": many APIs send a bare 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_401_without_a_challenge_is_refreshed_once_like_any_other() {
    a_revoked_token_is_refreshed_once(true).await;
}

/// semantics.md: "Every 2xx is success (PostgREST answers 206 when a count
/// is asked for)".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_answered_206_partial_content_are_ordinary_pages() {
    let server = OAuthServer::start(Behaviour {
        pages: 3,
        partial_content: true,
        ..Behaviour::default()
    })
    .await;
    let project = project(&server, "", CC, None);
    let output = server.run(&project, &["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(project.rows("items").len(), server.expected_rows(1));
    let statuses: Vec<u16> = server.api_requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [206, 206, 206], "each page once, none retried");
}

/// semantics.md: one refresh however many requests see the revoked token.
/// Fetching ahead, several pages of one stream carry the old token at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_pages_are_fetched_ahead_is_refreshed_once() {
    let server = OAuthServer::start(Behaviour {
        pages: 8,
        revoke_at_page: Some(3),
        // Slow pages: the requests fetched ahead overlap, so several carry
        // the revoked token.
        page_delay: Duration::from_millis(20),
        ..Behaviour::default()
    })
    .await;
    let project = project(&server, "concurrency = 8", CC, None);
    let job = server.job("acme", None).replace(
        "type = \"next_url\"\nnext_url_path = \"/next\"",
        "type = \"page\"\ntotal_pages_path = \"/total_pages\"",
    );
    assert!(job.contains("total_pages_path"), "{job}");
    project.job("items", &job);
    let output = server.run(&project, &["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(project.rows("items").len(), server.expected_rows(1));
    assert_eq!(server.access_tokens().len(), 2, "one refresh");
    let mut answered: Vec<u64> = server
        .api_requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| r.page)
        .collect();
    answered.sort_unstable();
    assert_eq!(answered, (1..=8).collect::<Vec<_>>(), "each page once");
    let refused = server
        .api_requests()
        .into_iter()
        .filter(|r| r.status == 401)
        .count();
    assert!(refused >= 1, "page 3 met the revoked token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_401_fails_the_stream_naming_the_job_and_the_page() {
    let server = OAuthServer::start(Behaviour {
        pages: 4,
        unauthorized_page: Some(3),
        ..Behaviour::default()
    })
    .await;
    let project = project(&server, "", CC, None);
    let shown = failed_run(&server, &project, &["run"]).await;
    assert!(shown.contains(&refused(&server, 3, 401)), "{shown}");
    assert!(shown.contains("refused again with a new token"), "{shown}");
    // One refresh, one replay, then the stream stops: no refresh loop.
    assert_eq!(server.token_requests().len(), 2);
    let page_3 = server.tokens_on_page(3);
    let tokens = server.access_tokens();
    assert_eq!(
        page_3,
        [Some(tokens[0].clone()), Some(tokens[1].clone())],
        "the replay carries the new token"
    );
    assert_eq!(
        project.rows("items").len(),
        4,
        "pages 1 and 2 stay committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_is_a_permission_error_naming_the_scope_and_is_never_refreshed() {
    let server = OAuthServer::start(Behaviour {
        pages: 3,
        forbidden_page: Some(2),
        ..Behaviour::default()
    })
    .await;
    let project = project(&server, "", CC, None);
    let shown = failed_run(&server, &project, &["run"]).await;
    assert!(shown.contains(&refused(&server, 2, 403)), "{shown}");
    assert!(shown.contains("lacks scope \"items:admin\""), "{shown}");
    assert_eq!(server.token_requests().len(), 1, "403 is not refreshed");
    let page_2 = server.tokens_on_page(2).len();
    assert_eq!(page_2, 1, "403 is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_is_used_by_the_next_run_and_the_spent_one_is_refused() {
    let server = OAuthServer::start(Behaviour {
        rotate: true,
        ..Behaviour::default()
    })
    .await;
    let project = project(&server, "", RT, None);
    for run in 1..=2 {
        let output = server.run(&project, &["run"]).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "run {run}: {}",
            describe(&output)
        );
    }
    // Both runs were configured with the first refresh token; the second
    // used the one the first run was given and stored.
    let refresh = server.refresh_tokens();
    let spent: Vec<_> = server
        .token_requests()
        .into_iter()
        .map(|r| (r.grant_type, r.refresh_token, r.status))
        .collect();
    assert_eq!(
        spent,
        [
            ("refresh_token".into(), Some(refresh[0].clone()), 200),
            ("refresh_token".into(), Some(refresh[1].clone()), 200),
        ]
    );
    assert_eq!(refresh[0], FIRST_REFRESH);

    // The server really refuses a spent refresh token: a run on a fresh
    // database (nothing stored) fails with invalid_grant, quoting no token.
    let shown = failed_run(&server, &project, &["run", "--db", "fresh.db"]).await;
    assert!(shown.contains("invalid_grant"), "{shown}");
    for token in server.refresh_tokens() {
        assert!(!shown.contains(&token), "{token} leaked: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secrets_with_reserved_characters_work_with_basic_and_post() {
    let server = OAuthServer::start(Behaviour::default()).await;
    let project = Project::new();
    project.config(&format!(
        "{}\n{}",
        server.auth_table("viabasic", CC, "basic"),
        server.auth_table("viapost", CC, "post")
    ));
    project.job("basic_items", &server.job("viabasic", None));
    project.job("post_items", &server.job("viapost", None));
    let output = server.run(&project, &["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(project.rows("basic_items").len(), server.expected_rows(1));
    assert_eq!(project.rows("post_items").len(), server.expected_rows(1));

    let mut seen: Vec<_> = server
        .token_requests()
        .into_iter()
        .map(|r| (r.basic, r.client, r.status))
        .collect();
    seen.sort();
    let client = Some((CLIENT_ID.to_string(), CLIENT_SECRET.to_string()));
    assert_eq!(
        seen,
        [(false, client.clone(), 200), (true, client, 200)],
        "one token request per auth, each with the exact secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_client_fails_fast_with_exactly_one_token_request() {
    let server = OAuthServer::start(Behaviour {
        invalid_client: true,
        ..Behaviour::default()
    })
    .await;
    // Four streams share the credential: the final answer is remembered.
    let project = project(&server, "", CC, Some(4));
    let shown = failed_run(&server, &project, &["run"]).await;
    assert!(shown.contains("invalid_client"), "{shown}");
    assert!(shown.contains("items"), "names the job: {shown}");
    assert!(!shown.contains(CLIENT_SECRET), "{shown}");
    assert_eq!(server.token_requests().len(), 1, "no retries");
    assert!(server.api_requests().is_empty(), "nothing sent to the API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_link_to_another_origin_fails_naming_the_page_and_reaches_nothing() {
    let foreign = Foreign::start().await;
    let target = format!("{}/elsewhere?page=3", foreign.base);
    let server = OAuthServer::start(Behaviour {
        pages: 2,
        last_next: Some(target.clone()),
        ..Behaviour::default()
    })
    .await;
    let project = project(&server, "", CC, None);
    let shown = failed_run(&server, &project, &["run"]).await;
    let page = format!("{}/items/all?page=2", server.base());
    assert!(
        shown.contains(&format!("job \"items\": GET {page} leads to {target}")),
        "the error names the page that carried the link: {shown}"
    );
    assert!(shown.contains("allow_cross_origin"), "{shown}");
    assert_eq!(foreign.requests(), Vec::<Option<String>>::new());
    assert_eq!(
        project.rows("items").len(),
        2,
        "the page with the refused link is not committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_cross_origin_link_is_followed_without_credentials() {
    let foreign = Foreign::start().await;
    let server = OAuthServer::start(Behaviour {
        pages: 2,
        last_next: Some(format!("{}/elsewhere?page=3", foreign.base)),
        ..Behaviour::default()
    })
    .await;
    let project = Project::new();
    project.config(&server.auth_table("acme", CC, "basic"));
    let job = server.job("acme", None).replace(
        "next_url_path = \"/next\"",
        "next_url_path = \"/next\"\nallow_cross_origin = true",
    );
    project.job("items", &job);
    let output = server.run(&project, &["run"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(foreign.requests(), vec![None], "no Authorization header");
    assert_eq!(project.rows("items").len(), server.expected_rows(1) + 1);
}

/// The forms a secret could leak in: raw, form-urlencoded, percent-encoded,
/// and base64 (alone, or inside a Basic header with the client id).
fn leak_forms(secret: &str) -> Vec<(&'static str, String)> {
    let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let percent: String = secret
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    vec![
        ("raw", secret.to_string()),
        ("form-urlencoded", form(secret)),
        ("percent-encoded", percent),
        ("base64", b64(secret)),
        (
            "basic",
            b64(&format!("{}:{}", form(CLIENT_ID), form(secret))),
        ),
        ("basic unencoded", b64(&format!("{CLIENT_ID}:{secret}"))),
    ]
}

/// Every (secret, form) of `secrets` found in `text`.
fn leaks(text: &str, secrets: &[String]) -> Vec<String> {
    secrets
        .iter()
        .flat_map(|secret| {
            leak_forms(secret)
                .into_iter()
                .filter(|(_, form)| text.contains(form.as_str()))
                .map(move |(kind, _)| format!("{secret} ({kind})"))
        })
        .collect()
}

#[test]
fn the_leak_checker_finds_a_planted_secret_in_every_form() {
    let secrets = vec![CLIENT_SECRET.to_string()];
    assert!(leaks("a clean log line", &secrets).is_empty());
    for (kind, form) in leak_forms(CLIENT_SECRET) {
        let planted = format!("DEBUG request: header=\"{form}\" sent");
        assert!(
            !leaks(&planted, &secrets).is_empty(),
            "{kind} not detected in {planted}"
        );
    }
    // Every encoded form differs from the raw one for this secret, so each
    // check is a real one.
    for (kind, form) in leak_forms(CLIENT_SECRET).into_iter().skip(1) {
        assert_ne!(form, CLIENT_SECRET, "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_logged_at_trace_level_shows_no_secret() {
    let server = OAuthServer::start(Behaviour {
        pages: 4,
        rotate: true,
        revoke_at_page: Some(3),
        ..Behaviour::default()
    })
    .await;
    let project = Project::new();
    project.config(&format!(
        "{}\n{}",
        server.auth_table("cc", CC, "post"),
        server.auth_table("rt", RT, "basic")
    ));
    project.job("cc_items", &server.job("cc", None));
    project.job("rt_items", &server.job("rt", Some(2)));
    let mut shown = String::new();
    for args in [&["-vv", "run"][..], &["-vv", "run"], &["-vv", "status"]] {
        let output = server
            .command(&project, args)
            .env("RUST_LOG", "trace")
            .output()
            .await
            .expect("run apisync");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            describe(&output)
        );
        shown.push_str(&text(&output));
    }
    // The output really is trace level, token refreshes included.
    assert!(shown.contains("TRACE"), "{shown}");
    assert!(shown.contains("new access token"), "{shown}");
    assert!(server.token_requests().len() >= 4, "refreshes happened");

    let mut secrets = vec![CLIENT_SECRET.to_string()];
    secrets.extend(server.access_tokens());
    secrets.extend(server.refresh_tokens());
    let found = leaks(&shown, &secrets);
    assert!(found.is_empty(), "leaked: {found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_secret_runs_once_per_process_and_a_failing_one_shows_only_its_status() {
    let server = OAuthServer::start(Behaviour::default()).await;
    let project = Project::new();
    std::fs::write(
        project.path().join("secret.txt"),
        format!("{CLIENT_SECRET}\n"),
    )
    .unwrap();
    let command =
        r#"client_secret = { command = ["sh", "-c", "echo ran >> calls.log && cat secret.txt"] }"#;
    let from_env = r#"client_secret = { env = "E2E_CLIENT_SECRET" }"#;
    project.config(&format!(
        "{}\n{}\n[auth.broken]\ntype = \"bearer\"\ntoken = {{ command = [\"sh\", \"-c\", \"echo leaked-9Fq; exit 3\"] }}\n",
        server.auth_table("one", CC, "basic").replace(from_env, command),
        server.auth_table("two", CC, "post").replace(from_env, command),
    ));
    project.job("one_items", &server.job("one", None));
    project.job("two_items", &server.job("two", None));
    project.job("broken_items", &server.job("broken", None));
    let output = server
        .command(&project, &["run"])
        .env_remove("E2E_CLIENT_SECRET")
        .output()
        .await
        .expect("run apisync");
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(project.rows("one_items").len(), server.expected_rows(1));
    assert_eq!(project.rows("two_items").len(), server.expected_rows(1));
    let calls = std::fs::read_to_string(project.path().join("calls.log")).unwrap();
    assert_eq!(calls, "ran\n", "one command run for both auths");
    assert!(
        server.token_requests().iter().all(|r| r.status == 200),
        "the secret came from the command"
    );
    assert!(shown.contains("broken_items"), "{shown}");
    assert!(shown.contains("exit status: 3"), "{shown}");
    assert!(!shown.contains("leaked-9Fq"), "{shown}");
    assert!(!shown.contains(CLIENT_SECRET), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_file_supplies_secrets_and_the_environment_wins() {
    let server = OAuthServer::start(Behaviour {
        rotate: true,
        ..Behaviour::default()
    })
    .await;
    let project = project(&server, "", RT, None);
    std::fs::write(
        project.path().join(".env"),
        format!(
            "# secrets for e2e\nexport E2E_CLIENT_SECRET=\"{CLIENT_SECRET}\"\nE2E_REFRESH_TOKEN='{FIRST_REFRESH}'\nE2E_CLIENT_ID=wrong-id\n"
        ),
    )
    .unwrap();
    let output = server
        .command(&project, &["run", "--env-file", ".env"])
        .env_remove("E2E_CLIENT_SECRET")
        .env_remove("E2E_REFRESH_TOKEN")
        .output()
        .await
        .expect("run apisync");
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let seen: Vec<_> = server
        .token_requests()
        .into_iter()
        .map(|r| (r.client, r.refresh_token))
        .collect();
    assert_eq!(
        seen,
        [(
            Some((CLIENT_ID.to_string(), CLIENT_SECRET.to_string())),
            Some(FIRST_REFRESH.to_string())
        )],
        "the secret and refresh token from the file, the id from the environment"
    );
    assert_eq!(project.rows("items").len(), server.expected_rows(1));
}
