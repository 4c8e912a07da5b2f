//! One token endpoint (RFC 6749): building token requests, reading the
//! answers, retrying what may heal. Written by hand on reqwest because the
//! `oauth2` crate pins an older reqwest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::error::TokenError;
use super::timing::{self, Clock, MAX_ATTEMPTS, MAX_LIFETIME};
use crate::auth::{AuthError, resolve_secret};
use crate::plan::{ClientAuthMethod, OAuthPlan};
use crate::secret::{REDACTED, Secret};

/// Per attempt, including reading the body.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the end of a run waits for a token refresh in flight: one
/// attempt's `REQUEST_TIMEOUT` plus a few seconds to store a rotated
/// refresh token (no new attempt starts once the run is ending).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(35);
/// Longest error code or description quoted from a server.
const QUOTE_LIMIT: usize = 300;

/// What a token request asks for.
pub(crate) enum Grant<'a> {
    ClientCredentials,
    Refresh(&'a Secret),
}

/// A token the endpoint issued.
#[derive(Debug)]
pub(crate) struct Issued {
    pub access: Secret,
    /// When the request that got it was sent: its lifetime counts from here.
    pub sent: Instant,
    pub lifetime: Duration,
    /// A new refresh token (rotation); the old one must not be used again.
    pub rotated: Option<Secret>,
}

/// A token endpoint with the client's resolved credentials.
#[derive(Debug)]
pub(crate) struct Endpoint {
    url: Url,
    client_id: Secret,
    client_secret: Option<Secret>,
    method: ClientAuthMethod,
    scope: Option<String>,
    audience: Option<String>,
    default_lifetime: Duration,
}

/// Why one attempt failed in a way a retry may fix.
enum Transient {
    Status(u16, Option<Duration>),
    Network(String),
}

impl Endpoint {
    /// Resolve the client's secrets and check the URL may carry them.
    pub(crate) fn new(auth: &str, plan: &OAuthPlan) -> Result<Self, AuthError> {
        if crate::secret::may_carry_credentials(&plan.token_url, &plan.token_url.origin()).is_err()
        {
            return Err(AuthError::TokenEndpoint {
                auth: auth.to_string(),
                message: TokenError::InsecureUrl.to_string(),
            });
        }
        let client_secret = plan
            .client_secret
            .as_ref()
            .map(resolve_secret)
            .transpose()?;
        Ok(Endpoint {
            url: plan.token_url.clone(),
            client_id: resolve_secret(&plan.client_id)?,
            client_secret,
            method: plan.client_auth,
            scope: (!plan.scopes.is_empty()).then(|| plan.scopes.join(" ")),
            audience: plan.audience.clone(),
            default_lifetime: plan.default_lifetime,
        })
    }

    /// The URL for messages: without query or credentials.
    pub(crate) fn display_url(&self) -> String {
        let mut url = self.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.to_string()
    }

    /// Get a token, retrying 5xx, 429 and network errors with backoff.
    /// `requests` counts every attempt. Once `closing` is cancelled no
    /// further attempt starts (the one in flight is let finish: its answer
    /// may carry a rotated refresh token).
    pub(crate) async fn request(
        &self,
        client: &reqwest::Client,
        grant: &Grant<'_>,
        clock: &Clock,
        requests: &AtomicU64,
        closing: &CancellationToken,
    ) -> Result<Issued, TokenError> {
        let mut attempt = 1;
        loop {
            requests.fetch_add(1, Ordering::Relaxed);
            let sent = clock.now();
            let failure = match self.attempt(client, grant, sent).await {
                Ok(result) => return result,
                Err(failure) => failure,
            };
            let (retry_after, error) = match failure {
                Transient::Status(status, retry_after) => (
                    retry_after,
                    TokenError::Status {
                        status,
                        attempts: attempt,
                    },
                ),
                Transient::Network(reason) => (
                    None,
                    TokenError::Network {
                        attempts: attempt,
                        reason,
                    },
                ),
            };
            if attempt >= MAX_ATTEMPTS || closing.is_cancelled() {
                return Err(error);
            }
            let delay = timing::backoff(attempt, retry_after, rand::random::<f64>());
            tracing::warn!(url = %self.display_url(), attempt, ?delay, %error, "token request failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = closing.cancelled() => return Err(error),
            }
            attempt += 1;
        }
    }

    /// One token request. `Err` means "retry may help"; `Ok(Err)` is final.
    async fn attempt(
        &self,
        client: &reqwest::Client,
        grant: &Grant<'_>,
        sent: Instant,
    ) -> Result<Result<Issued, TokenError>, Transient> {
        let response = self
            .build(client, grant)
            .send()
            .await
            .map_err(network_reason)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(timing::parse_retry_after);
        let body = response.bytes().await.map_err(network_reason)?;
        if status == 429 || (500..=599).contains(&status) {
            return Err(Transient::Status(status, retry_after));
        }
        if !(200..=299).contains(&status) {
            return Ok(Err(self.refusal(status, &body, grant)));
        }
        Ok(self.issued(&body, sent))
    }

    fn build(&self, client: &reqwest::Client, grant: &Grant<'_>) -> reqwest::RequestBuilder {
        let mut form: Vec<(&str, &str)> = Vec::new();
        match grant {
            Grant::ClientCredentials => form.push(("grant_type", "client_credentials")),
            Grant::Refresh(token) => {
                form.push(("grant_type", "refresh_token"));
                form.push(("refresh_token", token.expose()));
            }
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        if let Some(audience) = &self.audience {
            form.push(("audience", audience));
        }
        let mut request = client
            .post(self.url.clone())
            .timeout(REQUEST_TIMEOUT)
            .header(ACCEPT, "application/json");
        match (&self.client_secret, self.method) {
            (Some(secret), ClientAuthMethod::Basic) => {
                request = request.header(AUTHORIZATION, basic_header(&self.client_id, secret));
            }
            (Some(secret), ClientAuthMethod::Post) => {
                form.push(("client_id", self.client_id.expose()));
                form.push(("client_secret", secret.expose()));
            }
            // A public client identifies itself in the body (RFC 6749 3.2.1).
            (None, _) => form.push(("client_id", self.client_id.expose())),
        }
        request.form(&form)
    }

    /// A non-retryable error answer, with the server's reason when it gave one.
    fn refusal(&self, status: u16, body: &[u8], grant: &Grant<'_>) -> TokenError {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: Option<String>,
            error_description: Option<String>,
        }
        let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
        match parsed.and_then(|b| b.error.map(|code| (code, b.error_description))) {
            Some((code, description)) if status == 400 || status == 401 => TokenError::Refused {
                status,
                code: self.scrub(&code, grant),
                description: description.map(|text| self.scrub(&text, grant)),
            },
            _ => TokenError::Status {
                status,
                attempts: 1,
            },
        }
    }

    /// Server text made safe to quote: our own secrets removed, control
    /// characters dropped, length bounded.
    fn scrub(&self, text: &str, grant: &Grant<'_>) -> String {
        // Secrets go before the cut (one cut in two would show all but its
        // end), and in every form the scrubber knows (the form body this
        // server may echo holds them URL-encoded).
        let mut clean: String = text.chars().filter(|c| !c.is_control()).collect();
        let mut secrets = vec![&self.client_id];
        secrets.extend(&self.client_secret);
        if let Grant::Refresh(token) = grant {
            secrets.push(token);
        }
        for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
            clean = clean.replace(secret.expose(), REDACTED);
        }
        crate::secret::scrub(&clean)
            .chars()
            .take(QUOTE_LIMIT)
            .collect()
    }

    /// The token answer read. A new refresh token in an answer that is
    /// otherwise unusable comes back inside the error: the server has spent
    /// the one we sent, so losing the new one would lose the grant.
    fn issued(&self, body: &[u8], sent: Instant) -> Result<Issued, TokenError> {
        self.read_issued(body, sent)
            .map_err(|error| {
                match serde_json::from_slice::<RotationOnly>(body)
                    .ok()
                    .and_then(|b| b.refresh_token)
                    .filter(|t| !t.is_empty())
                {
                    Some(rotated) => TokenError::RotatedButUnusable {
                        rotated,
                        error: Box::new(error),
                    },
                    None => error,
                }
            })
    }

    fn read_issued(&self, body: &[u8], sent: Instant) -> Result<Issued, TokenError> {
        let parsed: SuccessBody =
            serde_json::from_slice(body).map_err(|e| TokenError::BadResponse {
                // serde's message may quote a value (the token): keep only where.
                reason: format!(
                    "the body is not a JSON object with string fields (error at line {} column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        let access = parsed
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| TokenError::BadResponse {
                reason: "access_token is missing".into(),
            })?;
        let token_type = parsed.token_type.ok_or_else(|| TokenError::BadResponse {
            reason: "token_type is missing".into(),
        })?;
        if !token_type.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::UnsupportedTokenType {
                token_type: token_type
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(40)
                    .collect(),
            });
        }
        let lifetime = match parsed.expires_in {
            None | Some(serde_json::Value::Null) => self.default_lifetime,
            // A token expired when issued cannot be meant: providers send 0
            // for "not stated" or "does not expire". Taken literally it
            // meant one token request per API request.
            Some(value) => match parse_expires_in(&value)? {
                Duration::ZERO => self.default_lifetime,
                seconds => seconds,
            },
        };
        Ok(Issued {
            access,
            sent,
            lifetime: timing::clamp_lifetime(lifetime),
            rotated: parsed.refresh_token.filter(|t| !t.is_empty()),
        })
    }
}

/// Only the refresh token of an answer, whatever else it holds.
#[derive(Deserialize)]
struct RotationOnly {
    refresh_token: Option<Secret>,
}

/// RFC 6749 5.1; unknown fields are ignored.
#[derive(Deserialize)]
struct SuccessBody {
    access_token: Option<Secret>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<Secret>,
}

/// `expires_in` as a number or, as some providers send it, a numeric string.
fn parse_expires_in(value: &serde_json::Value) -> Result<Duration, TokenError> {
    let seconds = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    seconds
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::try_from_secs_f64(s).unwrap_or(MAX_LIFETIME))
        .ok_or_else(|| TokenError::BadResponse {
            reason: "expires_in is not a non-negative number of seconds".into(),
        })
}

/// client_secret_basic: each part form-urlencoded first (RFC 6749 2.3.1,
/// Appendix B), so a `:` in the id or secret cannot shift the split.
fn basic_header(id: &Secret, secret: &Secret) -> HeaderValue {
    let encode = |s: &Secret| {
        url::form_urlencoded::byte_serialize(s.expose().as_bytes()).collect::<String>()
    };
    let joined = format!("{}:{}", encode(id), encode(secret));
    let encoded = base64::engine::general_purpose::STANDARD.encode(joined);
    // A token endpoint that echoes the header it was sent (in an
    // error_description) must not put the client credentials into a log.
    crate::secret::register(&Secret::new(encoded.clone()));
    // Base64 output is always a valid header value.
    let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

fn network_reason(error: reqwest::Error) -> Transient {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // without_url: the token URL's query is not ours to print.
    Transient::Network(format!("{kind}: {}", error.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_number_or_string() {
        let v = |j: &str| parse_expires_in(&serde_json::from_str(j).unwrap());
        assert_eq!(v("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(v("\"20\"").unwrap(), Duration::from_secs(20));
        assert_eq!(v("1.5").unwrap(), Duration::from_millis(1500));
        assert!(v("-1").is_err());
        assert!(v("\"soon\"").is_err());
        assert!(v("true").is_err());
        assert_eq!(v("1e300").unwrap(), MAX_LIFETIME);
    }

    fn endpoint(default_lifetime: Duration) -> Endpoint {
        let plan = OAuthPlan {
            token_url: Url::parse("https://auth.example/token").unwrap(),
            client_id: crate::plan::SecretSource::Plain(Secret::new("id")),
            client_secret: None,
            scopes: vec![],
            client_auth: ClientAuthMethod::Basic,
            refresh_before: Duration::from_secs(60),
            audience: None,
            default_lifetime,
        };
        Endpoint::new("acme", &plan).unwrap()
    }

    /// The lifetime a token answer with this `expires_in` is given.
    fn lifetime(endpoint: &Endpoint, expires_in: &str) -> Duration {
        let body = format!(
            r#"{{"access_token": "at", "token_type": "bearer", "expires_in": {expires_in}}}"#
        );
        let issued = endpoint.issued(body.as_bytes(), Instant::now()).unwrap();
        issued.lifetime
    }

    #[test]
    fn lifetimes_are_clamped_and_zero_means_not_stated() {
        let hour = Duration::from_secs(3600);
        let endpoint = endpoint(hour);
        assert_eq!(lifetime(&endpoint, "0"), hour);
        assert_eq!(lifetime(&endpoint, "\"0\""), hour);
        assert_eq!(lifetime(&endpoint, "0.2"), timing::MIN_LIFETIME);
        assert_eq!(lifetime(&endpoint, "20"), Duration::from_secs(20));
        assert_eq!(lifetime(&endpoint, "1000000000000"), MAX_LIFETIME);
        assert_eq!(lifetime(&endpoint, "1e300"), MAX_LIFETIME);
        assert_eq!(lifetime(&endpoint, "null"), hour);
        let forever = self::endpoint(Duration::MAX);
        assert_eq!(lifetime(&forever, "null"), MAX_LIFETIME);
    }

    #[test]
    fn basic_header_form_encodes_each_part() {
        let value = basic_header(&Secret::new("my id"), &Secret::new("a/b+c:d%e"));
        assert!(value.is_sensitive());
        let text = value
            .to_str()
            .unwrap()
            .strip_prefix("Basic ")
            .unwrap()
            .to_string();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "my+id:a%2Fb%2Bc%3Ad%25e"
        );
    }
}
