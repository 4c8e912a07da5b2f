//! PLACEHOLDER until the OAuth2 issue lands: the interface `Credential` uses.

use std::sync::Arc;

use super::{AuthError, RefreshOutcome};
use crate::plan::AuthPlan;
use crate::secret::Secret;

/// Durable storage of rotated refresh tokens (implemented by `store`).
pub trait TokenStore: Send + Sync + std::fmt::Debug {}

/// For commands that never refresh (validate, dry runs, tests of static auth).
#[derive(Debug)]
pub struct NoTokenStore;
impl TokenStore for NoTokenStore {}

#[derive(Debug)]
pub struct TokenSource {
    auth: String,
}

impl TokenSource {
    pub fn new(
        name: &str,
        _plan: &AuthPlan,
        _client: reqwest::Client,
        _store: Arc<dyn TokenStore>,
    ) -> Result<Self, AuthError> {
        Ok(TokenSource {
            auth: name.to_string(),
        })
    }

    pub async fn current(&self) -> Result<(Secret, u64), AuthError> {
        Err(AuthError::TokenEndpoint {
            auth: self.auth.clone(),
            message: "oauth2 is not implemented yet".into(),
        })
    }

    pub async fn invalidate(&self, _generation: u64) -> Result<RefreshOutcome, AuthError> {
        Err(AuthError::Rejected {
            auth: self.auth.clone(),
        })
    }

    pub fn token_requests(&self) -> u64 {
        0
    }
}
