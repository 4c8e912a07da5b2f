//! Credentials: `Secret` sources resolved at run time, static credentials
//! (bearer, api_key, basic) and OAuth2 token sources shared per named auth,
//! refreshed single-flight with a generation check on 401.

mod credential;
mod error;
pub mod oauth;
mod resolve;

pub use credential::{AppliedAuth, Credential, Credentials, Placement, RefreshOutcome};
pub use error::AuthError;
pub use oauth::{NoTokenStore, SETTLE_TIMEOUT, TokenStore};
pub use resolve::{resolve_named, resolve_secret};
