//! What can go wrong getting a token. No variant carries a token, a client
//! secret or a refresh token: descriptions from the server are scrubbed of
//! our own secrets before they get here.

use super::store::StoreFailure;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "token_url must use https (plain http is allowed only to loopback addresses) (hint: change the token_url scheme)"
    )]
    InsecureUrl,
    /// A final OAuth2 error (RFC 6749 5.2): retrying cannot help.
    #[error("refused the request with {status}: {code}{} (hint: {})", describe(.description), refusal_hint(.code))]
    Refused {
        status: u16,
        code: String,
        description: Option<String>,
    },
    #[error("returned {status} after {attempts} attempt(s) (hint: {})", status_hint(*.status))]
    Status { status: u16, attempts: u32 },
    #[error(
        "could not be reached after {attempts} attempt(s): {reason} (hint: check the network and token_url)"
    )]
    Network { attempts: u32, reason: String },
    #[error("answered with an unusable token response: {reason}")]
    BadResponse { reason: String },
    #[error("issued a token of type \"{token_type}\"; only bearer tokens are supported")]
    UnsupportedTokenType { token_type: String },
    /// A 200 answer that spent our refresh token and issued a new one, but
    /// whose access token cannot be used: the new refresh token must be
    /// kept all the same (the old one is spent), then `error` reported.
    #[error("{error}")]
    RotatedButUnusable {
        rotated: crate::secret::Secret,
        error: Box<TokenError>,
    },
    #[error(
        "cannot {action} the stored refresh token: {source} (hint: check that the database file is writable)"
    )]
    Store {
        action: &'static str,
        #[source]
        source: StoreFailure,
    },
}

fn describe(description: &Option<String>) -> String {
    match description {
        Some(text) => format!(" (\"{text}\")"),
        None => String::new(),
    }
}

fn refusal_hint(code: &str) -> &'static str {
    match code {
        "invalid_client" => "check client_id, client_secret and client_auth",
        "invalid_grant" => {
            "the refresh token is expired, revoked or already used: authorize again and configure the new refresh_token"
        }
        "unauthorized_client" => "the provider does not allow this client this grant type",
        "unsupported_grant_type" => "the provider does not support this grant: check the auth type",
        "invalid_scope" => "check scopes against what the client may ask for",
        _ => "check the auth settings against the provider's documentation",
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        429 | 500..=599 => "the token endpoint is unavailable or rate limiting: try again later",
        _ => "check token_url",
    }
}

impl TokenError {
    /// The user-facing message; `endpoint` names the token URL for the
    /// variants that describe what the endpoint did.
    pub(crate) fn message(&self, endpoint: &str) -> String {
        match self {
            TokenError::RotatedButUnusable { error, .. } => error.message(endpoint),
            TokenError::InsecureUrl | TokenError::Store { .. } => self.to_string(),
            _ => format!("token endpoint {endpoint} {self}"),
        }
    }

    /// Whether asking again later in this process cannot help: the server
    /// refused the client or the grant (RFC 6749 5.2), or the token type
    /// is one we cannot use. A failed save, an unparsable answer or a
    /// status without an OAuth2 error may heal, so they never stick.
    pub(crate) fn is_final(&self) -> bool {
        if let TokenError::RotatedButUnusable { error, .. } = self {
            return error.is_final();
        }
        matches!(
            self,
            TokenError::InsecureUrl
                | TokenError::Refused { .. }
                | TokenError::UnsupportedTokenType { .. }
        )
    }
}
