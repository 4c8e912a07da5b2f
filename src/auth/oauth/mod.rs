//! OAuth2 token sources: the client credentials and refresh token grants,
//! one `TokenSource` per named auth, refreshed single-flight, with rotated
//! refresh tokens kept durably through a `TokenStore`.

mod endpoint;
mod error;
mod source;
mod store;
mod timing;

pub use endpoint::SETTLE_TIMEOUT;
pub use error::TokenError;
pub use source::TokenSource;
pub use store::{NoTokenStore, RefreshGuard, StoreFailure, TokenStore};
