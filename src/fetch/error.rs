//! `FetchError`: why a stream's request failed, with the job, the method and
//! the URL (secrets redacted) as context, so `run` can print one line that
//! says what to fix. No variant ever carries a token or an api key: server
//! text is scrubbed when it is read (`send`) and again when the message is
//! written.

use super::DecodeError;

/// A failed request of one job's stream.
#[derive(Debug, thiserror::Error)]
#[error("{}", scrubbed(.job, .method, .url, .kind))]
pub struct FetchError {
    pub job: String,
    /// `GET` or `POST`; `GET` unless set with [`FetchError::with_method`].
    pub method: &'static str,
    /// Redacted: an api_key query parameter reads `[redacted]`.
    pub url: String,
    pub kind: FetchErrorKind,
}

/// What went wrong. The Display texts continue the sentence
/// `job "x": GET <url> ...` and end with a hint where the user can act.
#[derive(Debug, thiserror::Error)]
pub enum FetchErrorKind {
    #[error("returned {status}{}; the body starts with {body_start:?}{}", after(*.attempts), status_hint(*.status))]
    Status {
        status: u16,
        attempts: u32,
        /// The first ~300 bytes of the body, lossy UTF-8.
        body_start: String,
    },
    #[error(
        "was refused with 401 unauthorized: {detail} (hint: check the credential of the job's auth)"
    )]
    Unauthorized { detail: String },
    #[error("was refused with 403 forbidden: {detail}{}", forbidden_hint(.scope.as_deref()))]
    Forbidden {
        /// The scope named by an `insufficient_scope` challenge.
        scope: Option<String>,
        detail: String,
    },
    #[error("failed{}: {message} (hint: check that the host is reachable from here)", after(*.attempts))]
    Transport { attempts: u32, message: String },
    #[error("timed out{} (hint: raise request.timeout or ask for smaller pages)", after(*.attempts))]
    Timeout { attempts: u32 },
    #[error(
        "sent a body larger than {limit} bytes (hint: raise records.max_page_bytes or ask for smaller pages)"
    )]
    TooLarge { limit: u64 },
    #[error("gave an unusable page: {0}")]
    Decode(DecodeError),
    #[error(
        "leads to {target}, another origin than the job's URL (hint: set pagination.allow_cross_origin = true to follow it without credentials)"
    )]
    CrossOrigin { target: String },
    #[error(
        "was not sent: credentials go over plain http only to loopback addresses (hint: use https)"
    )]
    InsecureTransport,
    #[error(
        "redirected more than {limit} times (hint: check the URL; the server may be redirecting in a loop)"
    )]
    TooManyRedirects { limit: u32 },
    #[error("could not get credentials: {0}")]
    Auth(#[from] crate::auth::AuthError),
    /// The client itself could not be built (a bad proxy variable, no TLS
    /// roots); `job` and `url` are empty.
    #[error(
        "the HTTP client could not be built: {message} (hint: check HTTPS_PROXY, HTTP_PROXY and ALL_PROXY)"
    )]
    Setup { message: String },
    /// Pagination problems (loop detected, bad next URL, ...), built by pagination.
    #[error("could not paginate: {message}")]
    Pagination { message: String },
}

/// " after 6 attempts", or nothing for a failure at the first attempt.
fn after(attempts: u32) -> String {
    match attempts {
        0 | 1 => String::new(),
        n => format!(" after {n} attempts"),
    }
}

/// The whole sentence, with every credential in use removed: server text
/// (a body echoing the request URL, a header, a transport error) reaches
/// logs, the runs table and `status` only through here.
fn scrubbed(job: &str, method: &str, url: &str, kind: &FetchErrorKind) -> String {
    crate::secret::scrub(&format!("{}{kind}", prefix(job, method, url))).into_owned()
}

/// `job "x": GET <url> `, or nothing for errors outside any job.
fn prefix(job: &str, method: &str, url: &str) -> String {
    match job {
        "" => String::new(),
        _ => format!("job \"{job}\": {method} {url} "),
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        429 | 500..=599 => " (hint: lower concurrency or raise retry.max_attempts)",
        404 | 410 => " (hint: check the URL and its query parameters)",
        400 | 422 => " (hint: check the query parameters and the body the job sends)",
        _ => "",
    }
}

fn forbidden_hint(scope: Option<&str>) -> String {
    match scope {
        Some(scope) => format!(" (hint: the credential lacks scope \"{scope}\")"),
        None => " (hint: the credential may not read this resource)".into(),
    }
}

impl FetchError {
    pub fn new(job: &str, url: impl Into<String>, kind: FetchErrorKind) -> Self {
        FetchError {
            job: job.to_string(),
            method: "GET",
            url: url.into(),
            kind,
        }
    }

    /// Name the method in the message (`POST` for POST jobs).
    pub fn with_method(mut self, method: crate::plan::HttpMethod) -> Self {
        self.method = method_name(method);
        self
    }

    /// True for a 4xx other than 401/403/408/425/429 (run uses it to drop a
    /// rejected saved cursor and restart the stream).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self.kind,
            FetchErrorKind::Status {
                status: 400..=499,
                ..
            }
        ) && !matches!(
            self.kind,
            FetchErrorKind::Status {
                status: 401 | 403 | 408 | 425 | 429,
                ..
            }
        )
    }
}

pub(crate) fn method_name(method: crate::plan::HttpMethod) -> &'static str {
    match method {
        crate::plan::HttpMethod::Get => "GET",
        crate::plan::HttpMethod::Post => "POST",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://api.example.com/v1/orders?page=3&api_key=[redacted]";

    fn render(kind: FetchErrorKind) -> String {
        FetchError::new("orders", URL, kind).to_string()
    }

    #[test]
    fn every_kind_reads_as_one_sentence() {
        let lines = [
            render(FetchErrorKind::Status {
                status: 503,
                attempts: 6,
                body_start: "upstream busy".into(),
            }),
            render(FetchErrorKind::Status {
                status: 404,
                attempts: 1,
                body_start: "{\"error\":\"no such page\"}".into(),
            }),
            render(FetchErrorKind::Unauthorized {
                detail: "invalid_token: the access token expired".into(),
            }),
            render(FetchErrorKind::Forbidden {
                scope: Some("orders:read".into()),
                detail: "insufficient_scope".into(),
            }),
            render(FetchErrorKind::Forbidden {
                scope: None,
                detail: "no WWW-Authenticate detail".into(),
            }),
            render(FetchErrorKind::Transport {
                attempts: 6,
                message: "connection refused".into(),
            }),
            render(FetchErrorKind::Timeout { attempts: 6 }),
            render(FetchErrorKind::TooLarge { limit: 1024 }),
            render(FetchErrorKind::Decode(DecodeError {
                message: "records path /data is not an array".into(),
                retryable: false,
            })),
            render(FetchErrorKind::CrossOrigin {
                target: "https://cdn.example.net/page2".into(),
            }),
            render(FetchErrorKind::InsecureTransport),
            render(FetchErrorKind::TooManyRedirects { limit: 10 }),
            render(FetchErrorKind::Auth(crate::auth::AuthError::Rejected {
                auth: "shop".into(),
            })),
            render(FetchErrorKind::Pagination {
                message: "the next URL repeats page 2".into(),
            }),
            FetchError::new(
                "",
                "",
                FetchErrorKind::Setup {
                    message: "invalid proxy URL".into(),
                },
            )
            .to_string(),
            FetchError::new("orders", URL, FetchErrorKind::InsecureTransport)
                .with_method(crate::plan::HttpMethod::Post)
                .to_string(),
        ];
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn client_error_excludes_auth_and_retryable_statuses() {
        let status = |status| {
            FetchError::new(
                "j",
                "u",
                FetchErrorKind::Status {
                    status,
                    attempts: 1,
                    body_start: String::new(),
                },
            )
        };
        assert!(status(400).is_client_error());
        assert!(status(404).is_client_error());
        assert!(status(422).is_client_error());
        for not_client in [401, 403, 408, 425, 429, 500, 503] {
            assert!(!status(not_client).is_client_error(), "{not_client}");
        }
        let other = FetchError::new("j", "u", FetchErrorKind::Timeout { attempts: 1 });
        assert!(!other.is_client_error());
    }
}
