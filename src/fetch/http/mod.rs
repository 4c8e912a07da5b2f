//! Sending one request and getting one page back: the client and its
//! connection settings (`client`), one attempt with redirects and body limit
//! (`send`), what is retried and how long to wait (`retry`), the global,
//! per-host and rate limits (`limits`), and the credential: where it may go
//! (`context`), what counts as one (`credentials`), attaching it and the 401
//! protocol (`authorize`), reading a server's challenge (`challenge`).

mod authorize;
mod challenge;
mod client;
pub(super) mod context;
mod credentials;
mod limits;
mod retry;
mod send;

pub use client::{HttpClient, HttpOptions};
pub use context::RequestContext;
pub(crate) use send::describe;
