//! One attempt at a page: send (following redirects ourselves, so every hop
//! passes `check_target` and only same-origin hops carry the credential),
//! read the body within `max_page_bytes`, and classify what went wrong as
//! retryable or final.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{Extensions, StatusCode};
use reqwest::Response;
use reqwest_middleware::ClientWithMiddleware;
use url::Url;

use super::authorize::{Attach, AuthNote};
use super::challenge;
use super::context::RequestContext;
use super::credentials::is_credential_header;
use super::retry::{is_retryable_status, is_transient, parse_retry_after};
use crate::auth::AuthError;
use crate::fetch::FetchErrorKind;
use crate::fetch::RequestStats;
use crate::fetch::{PageRequest, PageResponse};
use crate::plan::HttpMethod;

/// Redirect hops followed within one attempt.
pub(crate) const MAX_REDIRECTS: u32 = 10;
/// How much of an error body goes into the message.
const BODY_START: usize = 300;

/// Why an attempt failed. `attempts` fields in `kind` are filled in by the
/// retry loop once it knows how many there were.
#[derive(Debug)]
pub(crate) struct Failure {
    pub kind: FetchErrorKind,
    pub retry: bool,
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn fatal(kind: FetchErrorKind) -> Self {
        Failure {
            kind,
            retry: false,
            retry_after: None,
        }
    }

    pub(crate) fn transient(kind: FetchErrorKind) -> Self {
        Failure {
            kind,
            retry: true,
            retry_after: None,
        }
    }
}

/// Send `req` and read a 2xx body; any other outcome is a `Failure`.
pub(crate) async fn exchange(
    client: &ClientWithMiddleware,
    ctx: &RequestContext,
    req: &PageRequest,
) -> Result<PageResponse, Failure> {
    let (mut response, url, note) = send_following(client, ctx, req).await?;
    let status = response.status();
    if !status.is_success() {
        let failure = status_failure(response, note).await;
        ctx.count(|stats| stats.answered(status.as_u16()));
        return Err(failure);
    }
    let headers = response.headers().clone();
    let body = read_limited(&mut response, ctx.max_page_bytes).await;
    ctx.count(|stats| match &body {
        Ok(body) => {
            stats.answered(status.as_u16());
            stats.read(body.len());
        }
        // Refused by us, but the server did answer.
        Err(Failure {
            kind: FetchErrorKind::TooLarge { .. },
            ..
        }) => stats.answered(status.as_u16()),
        Err(_) => stats.transport_error(),
    });
    let body = body?;
    Ok(PageResponse {
        url,
        status: status.as_u16(),
        headers,
        body,
    })
}

/// The response to `req` after redirects, the URL that answered (without
/// any credential parameter) and the auth middleware's note, if any.
async fn send_following(
    client: &ClientWithMiddleware,
    ctx: &RequestContext,
    req: &PageRequest,
) -> Result<(Response, Url, Option<AuthNote>), Failure> {
    let mut url = req.url.clone();
    let mut method = req.method;
    let mut body = req.body.as_ref();
    for _ in 0..=MAX_REDIRECTS {
        let (response, note) = send_one(client, ctx, req, &url, method, body).await?;
        let Some(next) = redirect_target(&response, &url) else {
            return Ok((response, url, note));
        };
        ctx.count(|stats| stats.answered(response.status().as_u16()));
        ctx.target_allowed(&next).map_err(Failure::fatal)?;
        // 303 means "see the result with GET"; 301/302/307/308 keep the
        // method and body (RFC 9110 allows it, and a POST search API would
        // break if it turned into a GET).
        if response.status() == StatusCode::SEE_OTHER {
            method = HttpMethod::Get;
            body = None;
        }
        url = next;
    }
    Err(Failure::fatal(FetchErrorKind::TooManyRedirects {
        limit: MAX_REDIRECTS,
    }))
}

/// The job's `{secret.*}` strings put into one request that may carry
/// credentials; nothing here outlives the request being built.
struct Secrets<'a> {
    ctx: &'a RequestContext,
    req: &'a PageRequest,
}

impl Secrets<'_> {
    fn expose(&self, text: &crate::plan::SecretText) -> Result<crate::secret::Secret, Failure> {
        text.expose(|name| self.ctx.secret(name))
            .map_err(|message| Failure::fatal(FetchErrorKind::Setup { message }))
    }

    /// `url` with each secret query parameter set (replacing any the
    /// server echoed into a next URL).
    fn url(&self, url: &Url) -> Result<Url, Failure> {
        let mut out = url.clone();
        for (name, text) in &self.req.secrets.query {
            let value = self.expose(text)?;
            out = super::credentials::rewrite_query(&out, name, None);
            out.query_pairs_mut().append_pair(name, value.expose());
        }
        Ok(out)
    }

    /// The secret headers, marked sensitive.
    fn headers(&self) -> Result<Vec<(&str, http::HeaderValue)>, Failure> {
        self.req
            .secrets
            .headers
            .iter()
            .map(|(name, text)| {
                let secret = self.expose(text)?;
                let mut value = http::HeaderValue::from_str(secret.expose()).map_err(|_| {
                    Failure::fatal(FetchErrorKind::Setup {
                        message: format!("the value of header {name} is not valid in HTTP (check the secret it holds)"),
                    })
                })?;
                value.set_sensitive(true);
                Ok((name.as_str(), value))
            })
            .collect()
    }

    /// The body with its secret strings in; a body that holds a secret is
    /// not sent where credentials may not go (leaving it out would change
    /// what is asked for).
    fn body<'b>(
        &self,
        body: Option<&'b serde_json::Value>,
        with_credentials: bool,
        url: &Url,
    ) -> Result<Option<std::borrow::Cow<'b, serde_json::Value>>, Failure> {
        let Some(body) = body else {
            return Ok(None);
        };
        if self.req.secrets.body.is_empty() {
            return Ok(Some(std::borrow::Cow::Borrowed(body)));
        }
        if !with_credentials {
            return Err(Failure::fatal(FetchErrorKind::CrossOrigin {
                target: self.ctx.redact(url),
            }));
        }
        let mut body = body.clone();
        for (pointer, text) in &self.req.secrets.body {
            let value = self.expose(text)?;
            crate::fetch::paginate::set_at(&mut body, pointer, value.expose().into())
                .map_err(|message| Failure::fatal(FetchErrorKind::Setup { message }))?;
        }
        Ok(Some(std::borrow::Cow::Owned(body)))
    }
}

/// Where a 301/302/303/307/308 points, resolved against `url`.
fn redirect_target(response: &Response, url: &Url) -> Option<Url> {
    let redirect = matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308);
    if !redirect {
        return None;
    }
    let location = response.headers().get(http::header::LOCATION)?;
    url.join(location.to_str().ok()?).ok()
}

async fn send_one(
    client: &ClientWithMiddleware,
    ctx: &RequestContext,
    req: &PageRequest,
    url: &Url,
    method: HttpMethod,
    body: Option<&serde_json::Value>,
) -> Result<(Response, Option<AuthNote>), Failure> {
    let credential = ctx.credential_for(url);
    let carries = credential.is_some()
        || req.headers.iter().any(|(n, _)| is_credential_header(n))
        || !req.secrets.is_empty();
    // One rule for the auth, for credential headers the job wrote itself,
    // and for the job's `{secret.*}` strings.
    let with_credentials = match ctx.credentials_allowed(url) {
        Ok(allowed) => allowed,
        Err(_) if carries => return Err(Failure::fatal(FetchErrorKind::InsecureTransport)),
        Err(_) => false,
    };
    let secrets = Secrets { ctx, req };
    let target = match with_credentials {
        true => secrets.url(url)?,
        false => url.clone(),
    };
    let body = secrets.body(body, with_credentials, url)?;
    let mut builder = match method {
        HttpMethod::Get => client.get(target),
        HttpMethod::Post => client.post(target),
    };
    for (name, value) in &req.headers {
        let credential_header = is_credential_header(name);
        if credential_header && !with_credentials {
            continue;
        }
        let Ok(mut value) = http::HeaderValue::from_str(value) else {
            return Err(Failure::fatal(FetchErrorKind::Transport {
                attempts: 1,
                message: format!("the value of header {name} is not valid in HTTP"),
            }));
        };
        value.set_sensitive(credential_header);
        builder = builder.header(name, value);
    }
    if with_credentials {
        for (name, value) in secrets.headers()? {
            builder = builder.header(name, value);
        }
    }
    if let Some(body) = &body {
        builder = builder.json(body.as_ref());
    }
    let request = builder.timeout(ctx.timeout).build().map_err(|error| {
        Failure::fatal(FetchErrorKind::Transport {
            attempts: 1,
            message: format!("the request could not be built: {}", describe(error)),
        })
    })?;
    let mut extensions = Extensions::new();
    if let Some(credential) = credential.filter(|_| with_credentials) {
        extensions.insert(Attach(credential.clone()));
    }
    ctx.count(RequestStats::sent);
    let response = client
        .execute_with_extensions(request, &mut extensions)
        .await
        .map_err(|error| {
            ctx.count(RequestStats::transport_error);
            send_failure(error)
        })?;
    Ok((response, extensions.remove::<AuthNote>()))
}

/// A request that got no response.
fn send_failure(error: reqwest_middleware::Error) -> Failure {
    let retry = is_transient(&error);
    match error {
        reqwest_middleware::Error::Middleware(error) => match error.downcast::<AuthError>() {
            Ok(auth) => Failure::fatal(FetchErrorKind::Auth(auth)),
            Err(other) => Failure::fatal(FetchErrorKind::Transport {
                attempts: 1,
                message: format!("{other:#}"),
            }),
        },
        reqwest_middleware::Error::Reqwest(error) if error.is_timeout() => {
            Failure::transient(FetchErrorKind::Timeout { attempts: 1 })
        }
        reqwest_middleware::Error::Reqwest(error) => Failure {
            kind: FetchErrorKind::Transport {
                attempts: 1,
                message: describe(error),
            },
            retry,
            retry_after: None,
        },
    }
}

/// A reqwest error and its causes, without the URL reqwest would print
/// (it may hold an api_key).
pub(crate) fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut parts = vec![error.to_string()];
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// Read a 2xx body, refusing more than `limit` bytes while reading (a
/// gzip bomb or a runaway export never lands in memory whole).
async fn read_limited(response: &mut Response, limit: u64) -> Result<Bytes, Failure> {
    let too_large = || Failure::fatal(FetchErrorKind::TooLarge { limit });
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(error) if error.is_timeout() => {
                return Err(Failure::transient(FetchErrorKind::Timeout { attempts: 1 }));
            }
            // A reset or truncated body: the whole page is fetched again.
            Err(error) => {
                return Err(Failure::transient(FetchErrorKind::Transport {
                    attempts: 1,
                    message: format!("reading the body: {}", describe(error)),
                }));
            }
        }
    }
}

/// A non-2xx response: 401/403 with what the server's challenge said,
/// retryable statuses with their `Retry-After`, the rest final.
async fn status_failure(mut response: Response, note: Option<AuthNote>) -> Failure {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    match status {
        401 => {
            let (_, mut detail) = challenge::detail(&headers);
            if let Some(AuthNote(note)) = note {
                detail = format!("{detail}; {note}");
            }
            Failure::fatal(FetchErrorKind::Unauthorized { detail })
        }
        403 => {
            let (bearer, detail) = challenge::detail(&headers);
            let scope = bearer
                .filter(|b| b.error.as_deref() == Some("insufficient_scope"))
                .and_then(|b| b.scope);
            Failure::fatal(FetchErrorKind::Forbidden { scope, detail })
        }
        _ => {
            let kind = FetchErrorKind::Status {
                status,
                attempts: 1,
                body_start: body_start(&mut response).await,
            };
            if !is_retryable_status(status) {
                return Failure::fatal(kind);
            }
            let retry_after = headers
                .get(http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, SystemTime::now()));
            Failure {
                kind,
                retry: true,
                retry_after,
            }
        }
    }
}

/// The first bytes of an error body, lossy UTF-8, scrubbed of credentials
/// (APIs echo the request URL, api_key and all); a body that breaks off
/// gives what arrived.
///
/// The scrubber runs before the cut, on a window longer than what is shown
/// by the longest credential form: a credential that a hostile server puts
/// across the cut would otherwise show all but its last characters.
async fn body_start(response: &mut Response) -> String {
    let window = BODY_START + crate::secret::longest_form();
    let mut start = Vec::new();
    while start.len() < window {
        match response.chunk().await {
            Ok(Some(chunk)) => start.extend_from_slice(&chunk),
            _ => break,
        }
    }
    start.truncate(window);
    crate::secret::scrub(&String::from_utf8_lossy(&start))
        .chars()
        .take(BODY_START)
        .collect()
}
