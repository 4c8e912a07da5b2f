//! `RequestContext`: everything that decides how one stream's requests are
//! sent: which origin may see its credential, how long a request may take,
//! how it is retried, how large a page may be, and which query parameter is
//! a secret to redact.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use url::{Origin, Url};

use super::credentials::{is_credential_header, rewrite_query};
use crate::auth::Credential;
use crate::fetch::RequestStats;
use crate::fetch::{FetchError, FetchErrorKind};
use crate::plan::{HttpMethod, JobPlan, RetryPlan};
use crate::secret::{REDACTED, Refusal, Secret, may_carry_credentials};

/// Everything that decides how one stream's requests are sent.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub(crate) job: String,
    pub(crate) method: HttpMethod,
    pub(crate) credential: Option<Arc<Credential>>,
    /// The origin the credential is pinned to: that of the job's URL
    /// template (never of substituted partition values), the only one that
    /// sees the credential.
    origin: Origin,
    pub(crate) allow_cross_origin: bool,
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPlan,
    pub(crate) max_page_bytes: u64,
    /// The api_key query parameter and those the job fills with a
    /// `{secret.*}`: redacted in printed URLs and stripped from stored ones.
    secret_params: Vec<String>,
    /// The values of the job's `{secret.*}` placeholders.
    secrets: Arc<BTreeMap<String, Secret>>,
    /// The job's request counters, when the caller wants them.
    stats: Option<Arc<RequestStats>>,
}

impl RequestContext {
    /// `pinned` is the URL whose origin alone sees the credential: the job's
    /// URL template (the stream passes it), or a test server's URL.
    pub fn new(job: &JobPlan, pinned: &Url, credential: Option<Arc<Credential>>) -> Self {
        let (_, mut secret_params) = crate::plan::secrets_used(&job.request);
        secret_params.extend(
            credential
                .as_deref()
                .and_then(Credential::query_param)
                .map(str::to_string),
        );
        // A credential the job wrote as a header value is a credential in
        // every respect: scrubbed from whatever the server sends back. A
        // `{secret.*}` was registered when it was resolved; each `{env.*}`
        // value is registered on its own (`Bearer {env.TOKEN}`: a server
        // may echo only the token), and text written into the file whole.
        for (name, value) in &job.request.headers {
            if is_credential_header(name) {
                register_header_credentials(value, &job.request.env);
            }
        }
        RequestContext {
            job: job.name.clone(),
            method: job.request.method,
            credential,
            origin: pinned.origin(),
            allow_cross_origin: job.pagination.allow_cross_origin,
            timeout: job.request.timeout,
            retry: job.retry.clone(),
            max_page_bytes: job.records.max_page_bytes,
            secret_params,
            secrets: Arc::default(),
            stats: None,
        }
    }

    /// The values of the job's `{secret.*}` placeholders (each already
    /// registered with the scrubber by whoever resolved it).
    pub fn with_secrets(mut self, secrets: Arc<BTreeMap<String, Secret>>) -> Self {
        self.secrets = secrets;
        self
    }

    /// The value of the job's secret `name`.
    pub(crate) fn secret(&self, name: &str) -> Option<Secret> {
        self.secrets.get(name).cloned()
    }

    /// Count this stream's requests in `stats` (one per job, shared by its
    /// partitions, read for the run summary).
    pub fn with_stats(mut self, stats: Arc<RequestStats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Update the counters, if any are attached.
    pub(crate) fn count(&self, update: impl FnOnce(&RequestStats)) {
        if let Some(stats) = &self.stats {
            update(stats);
        }
    }

    /// May a request go to `url`? Same origin (scheme, host, port) as the first URL:
    /// yes, with credentials. Other origin: Err(CrossOrigin) unless allow_cross_origin,
    /// then yes WITHOUT credentials. Pagination calls this for every next URL BEFORE
    /// the page that carried it is handed on, so a refused link never becomes a cursor.
    pub fn check_target(&self, url: &Url) -> Result<(), FetchError> {
        self.target_allowed(url)
            .map_err(|kind| self.error(&self.redact(url), kind))
    }

    /// `check_target` without the context, for redirects (whose error names
    /// the URL that redirected).
    pub(crate) fn target_allowed(&self, url: &Url) -> Result<(), FetchErrorKind> {
        let web = matches!(url.scheme(), "http" | "https");
        if web && (self.same_origin(url) || self.allow_cross_origin) {
            return Ok(());
        }
        Err(FetchErrorKind::CrossOrigin {
            target: self.redact(url),
        })
    }

    pub(crate) fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.origin
    }

    /// The credential to attach to a request for `url`: only on the pinned
    /// origin.
    pub(crate) fn credential_for(&self, url: &Url) -> Option<&Arc<Credential>> {
        self.credential.as_ref().filter(|_| self.same_origin(url))
    }

    /// May a request to `url` carry credentials (the auth's, or a job header
    /// such as `Authorization`)? `Ok(true)`: yes; `Ok(false)`: another
    /// origin, sent without them; `Err`: the pinned origin itself may not
    /// see them (plain http to a host that is not loopback).
    pub(crate) fn credentials_allowed(&self, url: &Url) -> Result<bool, Refusal> {
        match may_carry_credentials(url, &self.origin) {
            Ok(()) => Ok(true),
            Err(Refusal::OtherOrigin { .. } | Refusal::NotWeb { .. }) => Ok(false),
            Err(refusal) => Err(refusal),
        }
    }

    /// `url` for logs/errors/checkpoints: the api_key query param (if any) replaced by
    /// "[redacted]" (for printing) ...
    pub fn redact(&self, url: &Url) -> String {
        let mut url = url.clone();
        for name in &self.secret_params {
            url = rewrite_query(&url, name, Some(REDACTED));
        }
        url.to_string()
    }

    /// ... or removed entirely (for storing in a checkpoint; re-added on send).
    ///
    /// Besides the api_key parameter, any parameter whose value is a
    /// credential in use goes too: a server may put the caller's token into
    /// its next-page URL (`...&access_token=...`, as Facebook's Graph API
    /// does), and a saved position is stored in the database and shown by
    /// `status`. Resuming without it either works (the header carries the
    /// token) or is refused and handled as a rejected position.
    pub fn strip_secret_params(&self, url: &Url) -> Url {
        let mut url = url.clone();
        for name in &self.secret_params {
            url = rewrite_query(&url, name, None);
        }
        let echoed: Vec<String> = url
            .query_pairs()
            .filter(|(_, value)| crate::secret::is_credential(value))
            .map(|(name, _)| name.into_owned())
            .collect();
        for name in echoed {
            url = rewrite_query(&url, &name, None);
        }
        url
    }

    /// A `FetchError` of this stream.
    pub(crate) fn error(&self, url: &str, kind: FetchErrorKind) -> FetchError {
        FetchError::new(&self.job, url, kind).with_method(self.method)
    }
}

/// Register with the scrubber what of a credential header `template`
/// is known before sending: each `{env.*}` value, and the template's text
/// when it holds no other placeholder.
fn register_header_credentials(template: &str, env: &[(String, String)]) {
    use crate::plan::{Meaning, env_value};
    let mut whole = Some(String::new());
    for piece in crate::plan::template_pieces(template) {
        match piece {
            crate::plan::Piece::Text(text) => {
                if let Some(whole) = &mut whole {
                    whole.push_str(&text);
                }
            }
            crate::plan::Piece::Placeholder { name, .. } => match Meaning::of(name) {
                Meaning::Env(var) if let Some(value) = env_value(env, var) => {
                    crate::secret::register(&Secret::new(value));
                    if let Some(whole) = &mut whole {
                        whole.push_str(value);
                    }
                }
                _ => whole = None,
            },
        }
    }
    if let Some(whole) = whole {
        crate::secret::register(&Secret::new(whole));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::*;

    /// A GET job with fast retries, for tests of the fetch layer.
    pub(crate) fn sample_job() -> JobPlan {
        let mut job = crate::test_support::TestProject::new()
            .job(
                "orders",
                "[request]\nurl = \"https://api.example.com/v1/orders\"\ntimeout = \"10s\"\n\
                 [records]\nmax_page_bytes = 1048576\n\
                 [retry]\nmax_attempts = 2\ninitial_backoff = \"1ms\"\nmax_backoff = \"5ms\"\n\
                 max_elapsed = \"60s\"\n",
            )
            .plan()
            .jobs
            .pop()
            .expect("the one job");
        job.file = "jobs/orders.toml".into();
        job
    }

    #[test]
    fn check_target_allows_the_first_origin_and_others_only_when_allowed() {
        let first = url("https://api.example.com/v1/orders");
        let mut job = sample_job();
        let ctx = RequestContext::new(&job, &first, None);
        assert!(
            ctx.check_target(&url("https://api.example.com:443/v2?page=2"))
                .is_ok()
        );
        for other in [
            "http://api.example.com/v1",
            "https://api.example.com:8443/v1",
            "https://cdn.example.com/v1",
        ] {
            let err = ctx.check_target(&url(other)).unwrap_err();
            assert!(
                matches!(err.kind, FetchErrorKind::CrossOrigin { .. }),
                "{other}"
            );
            assert_eq!(err.url, other);
        }
        job.pagination.allow_cross_origin = true;
        let ctx = RequestContext::new(&job, &first, None);
        assert!(ctx.check_target(&url("https://cdn.example.com/v1")).is_ok());
        assert!(ctx.check_target(&url("ftp://cdn.example.com/v1")).is_err());
        assert!(
            ctx.credential_for(&url("https://cdn.example.com/v1"))
                .is_none()
        );
    }

    /// A key too short for the scrubber to register (under 4 characters)
    /// is still redacted in printed URLs and dropped from saved ones: by
    /// name, because the credential names its query parameter.
    #[test]
    fn a_short_query_key_is_redacted_and_stripped_by_its_parameter_name() {
        use crate::auth::{Credential, NoTokenStore};
        use crate::plan::{ApiKeyPlacement, AuthPlan, SecretSource};
        use crate::secret::Secret;
        let api_key = |placement| {
            let plan = AuthPlan::ApiKey {
                placement,
                key: SecretSource::Plain(Secret::new("xyz")),
            };
            let client = reqwest::Client::new();
            Credential::new("shop", &plan, &client, std::sync::Arc::new(NoTokenStore)).unwrap()
        };
        let credential = api_key(ApiKeyPlacement::Query("k".into()));
        assert_eq!(credential.name(), "shop");
        assert_eq!(credential.query_param(), Some("k"));
        let first = url("https://api.example.com/v1/orders");
        let ctx = RequestContext::new(&sample_job(), &first, Some(std::sync::Arc::new(credential)));
        let sent = url("https://api.example.com/v1/orders?page=2&k=xyz");
        assert_eq!(
            ctx.redact(&sent),
            "https://api.example.com/v1/orders?page=2&k=[redacted]"
        );
        assert_eq!(
            ctx.strip_secret_params(&sent).as_str(),
            "https://api.example.com/v1/orders?page=2"
        );

        let header = api_key(ApiKeyPlacement::Header("X-Key".into()));
        assert_eq!(header.query_param(), None);
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn rewrite_keeps_other_params_byte_for_byte() {
        let u = url("https://h/p?cursor=a%2Bb%20c&api_key=s3cret&x=1+2");
        assert_eq!(
            rewrite_query(&u, "api_key", Some(REDACTED)).as_str(),
            "https://h/p?cursor=a%2Bb%20c&api_key=[redacted]&x=1+2"
        );
        assert_eq!(
            rewrite_query(&u, "api_key", None).as_str(),
            "https://h/p?cursor=a%2Bb%20c&x=1+2"
        );
        let only = url("https://h/p?api_key=s3cret");
        assert_eq!(
            rewrite_query(&only, "api_key", None).as_str(),
            "https://h/p"
        );
        let encoded_name = url("https://h/p?api%5Fkey=s3cret&b");
        assert_eq!(
            rewrite_query(&encoded_name, "api_key", None).as_str(),
            "https://h/p?b"
        );
    }
}
