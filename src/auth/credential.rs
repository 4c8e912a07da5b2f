//! `Credential`: what a request carries to prove who we are, shared by every
//! stream that names the same auth. Static kinds (bearer, api_key, basic)
//! are resolved once; OAuth2 kinds delegate to a `TokenSource` that
//! refreshes single-flight.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;

use super::oauth::{TokenSource, TokenStore};
use super::{AuthError, resolve_secret};
use crate::plan::{ApiKeyPlacement, AuthPlan};
use crate::secret::Secret;

/// Where the credential goes on a request.
#[derive(Debug, Clone)]
pub enum Placement {
    /// A header; `value` is the full header value (`Bearer abc`, the key).
    Header { name: String, value: Secret },
    /// A query parameter (api_key with `query`). Redacted wherever a URL is printed.
    Query { name: String, value: Secret },
}

/// The credential to attach to one request. `generation` identifies the
/// token, so a 401 only invalidates the token that actually failed.
#[derive(Debug, Clone)]
pub struct AppliedAuth {
    pub placement: Placement,
    pub generation: u64,
}

/// What `Credential::invalidate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// This call fetched a new token.
    Refreshed,
    /// Another task already replaced the failed token; use the current one.
    AlreadyNewer,
}

/// One per named auth, shared behind an `Arc`.
#[derive(Debug)]
pub struct Credential {
    name: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Static(Placement),
    OAuth(Box<TokenSource>),
}

impl Credential {
    /// Resolve the secrets of a static credential now; OAuth2 ones fetch
    /// their first token on first use.
    pub fn new(
        name: &str,
        plan: &AuthPlan,
        token_client: &reqwest::Client,
        store: Arc<dyn TokenStore>,
    ) -> Result<Self, AuthError> {
        let kind = match plan {
            AuthPlan::Bearer { token } => Kind::Static(Placement::Header {
                name: "Authorization".into(),
                value: Secret::new(format!("Bearer {}", resolve_secret(token)?.expose())),
            }),
            AuthPlan::ApiKey { placement, key } => {
                let key = resolve_secret(key)?;
                Kind::Static(match placement {
                    ApiKeyPlacement::Header(header) => Placement::Header {
                        name: header.clone(),
                        value: key,
                    },
                    ApiKeyPlacement::Query(param) => Placement::Query {
                        name: param.clone(),
                        value: key,
                    },
                })
            }
            AuthPlan::Basic { username, password } => {
                let joined = format!(
                    "{}:{}",
                    resolve_secret(username)?.expose(),
                    resolve_secret(password)?.expose()
                );
                let encoded = Secret::new(base64::engine::general_purpose::STANDARD.encode(joined));
                // The header's base64 is what a server echoing headers shows.
                crate::secret::register(&encoded);
                let encoded = encoded.expose();
                Kind::Static(Placement::Header {
                    name: "Authorization".into(),
                    value: Secret::new(format!("Basic {encoded}")),
                })
            }
            AuthPlan::ClientCredentials(_) | AuthPlan::RefreshToken { .. } => Kind::OAuth(
                Box::new(TokenSource::new(name, plan, token_client.clone(), store)?),
            ),
        };
        Ok(Credential {
            name: name.to_string(),
            kind,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The query parameter this credential puts in URLs, if any, so fetch
    /// can strip it from every URL it prints or stores.
    pub fn query_param(&self) -> Option<&str> {
        match &self.kind {
            Kind::Static(Placement::Query { name, .. }) => Some(name),
            _ => None,
        }
    }

    /// The credential for the next request (cheap for a valid token: no
    /// lock that a refresh holds is taken).
    pub async fn current(&self) -> Result<AppliedAuth, AuthError> {
        match &self.kind {
            Kind::Static(placement) => Ok(AppliedAuth {
                placement: placement.clone(),
                generation: 0,
            }),
            Kind::OAuth(source) => {
                let (token, generation) = source.current().await?;
                Ok(AppliedAuth {
                    placement: Placement::Header {
                        name: "Authorization".into(),
                        value: Secret::new(format!("Bearer {}", token.expose())),
                    },
                    generation,
                })
            }
        }
    }

    /// A request made with `generation` got 401. Refresh if that token is
    /// still the current one; a static credential cannot be refreshed.
    pub async fn invalidate(&self, generation: u64) -> Result<RefreshOutcome, AuthError> {
        match &self.kind {
            Kind::Static(_) => Err(AuthError::Rejected {
                auth: self.name.clone(),
            }),
            Kind::OAuth(source) => source.invalidate(generation).await,
        }
    }

    /// Before the process exits: let a token refresh in flight finish and
    /// store what it got (see `TokenSource::settle`). True unless one was
    /// still running at `timeout`.
    pub async fn settle(&self, timeout: std::time::Duration) -> bool {
        match &self.kind {
            Kind::Static(_) => true,
            Kind::OAuth(source) => source.settle(timeout).await,
        }
    }

    /// Token requests made so far (0 for static credentials), for stats and tests.
    pub fn token_requests(&self) -> u64 {
        match &self.kind {
            Kind::Static(_) => 0,
            Kind::OAuth(source) => source.token_requests(),
        }
    }
}

/// Every credential the selected jobs use, built once per process.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    by_name: BTreeMap<String, Arc<Credential>>,
}

impl Credentials {
    /// Build the credentials named in `names` (those of the selected jobs).
    pub fn build<'a>(
        auths: &BTreeMap<String, AuthPlan>,
        names: impl IntoIterator<Item = &'a str>,
        token_client: &reqwest::Client,
        store: Arc<dyn TokenStore>,
    ) -> Result<Self, AuthError> {
        let mut by_name = BTreeMap::new();
        for name in names {
            if by_name.contains_key(name) {
                continue;
            }
            let plan = auths.get(name).ok_or_else(|| AuthError::Unknown {
                auth: name.to_string(),
            })?;
            let credential = Credential::new(name, plan, token_client, store.clone())?;
            by_name.insert(name.to_string(), Arc::new(credential));
        }
        Ok(Credentials { by_name })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Credential>> {
        self.by_name.get(name).cloned()
    }
}
