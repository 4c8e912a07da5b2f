//! The auth middleware: puts the credential's CURRENT token on a request
//! and runs the 401 protocol (invalidate the generation that failed, replay
//! with the new token; one more own refresh when someone else's token was
//! already stale). It sits inside the retry loop, so every attempt, after a
//! backoff too, carries the token that is current at that moment.
//!
//! A request carries an [`Attach`] extension only when it goes to the
//! stream's own origin; without it the middleware passes it through bare.

use std::sync::Arc;

use http::{Extensions, HeaderName, HeaderValue, StatusCode};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use super::credentials::rewrite_query;
use crate::auth::{AppliedAuth, AuthError, Credential, Placement, RefreshOutcome};

/// "Authenticate this request with this credential."
#[derive(Clone)]
pub(crate) struct Attach(pub Arc<Credential>);

/// Left in the extensions when a 401 could not lead to a new token, so
/// the final error can say why (never holds a token).
#[derive(Clone, Debug)]
pub(crate) struct AuthNote(pub String);

pub(crate) struct AuthMiddleware;

#[async_trait::async_trait]
impl Middleware for AuthMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let Some(Attach(credential)) = extensions.get::<Attach>().cloned() else {
            return next.run(req, extensions).await;
        };
        let mut applied = current(&credential).await?;
        let mut own_refresh = false;
        let mut replays = 0;
        loop {
            // A body that cannot be cloned (never ours: JSON bytes) is sent once.
            let Some(mut attempt) = req.try_clone() else {
                let mut once = req;
                apply(&credential, &applied, &mut once)?;
                return next.run(once, extensions).await;
            };
            apply(&credential, &applied, &mut attempt)?;
            let response = next.clone().run(attempt, extensions).await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            // After our own refresh (or a second try), another 401 is final.
            if replays == 2 || (replays == 1 && own_refresh) {
                extensions.insert(AuthNote("refused again with a new token".into()));
                return Ok(response);
            }
            match credential.invalidate(applied.generation).await {
                Ok(outcome) => own_refresh = outcome == RefreshOutcome::Refreshed,
                Err(AuthError::Rejected { auth }) => {
                    extensions.insert(AuthNote(format!("auth \"{auth}\" cannot be refreshed")));
                    return Ok(response);
                }
                Err(other) => return Err(reqwest_middleware::Error::middleware(other)),
            }
            replays += 1;
            applied = current(&credential).await?;
        }
    }
}

async fn current(credential: &Credential) -> reqwest_middleware::Result<AppliedAuth> {
    credential
        .current()
        .await
        .map_err(reqwest_middleware::Error::middleware)
}

/// Put the credential on the request: a sensitive header (never printed by
/// reqwest/hyper debug output), or the api_key query parameter.
fn apply(
    credential: &Credential,
    applied: &AppliedAuth,
    request: &mut Request,
) -> reqwest_middleware::Result<()> {
    let invalid = || {
        reqwest_middleware::Error::middleware(AuthError::InvalidHeaderValue {
            auth: credential.name().to_string(),
        })
    };
    match &applied.placement {
        Placement::Header { name, value } => {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| invalid())?;
            value.set_sensitive(true);
            request.headers_mut().insert(name, value);
        }
        Placement::Query { name, value } => {
            let mut url = rewrite_query(request.url(), name, None);
            url.query_pairs_mut().append_pair(name, value.expose());
            *request.url_mut() = url;
        }
    }
    Ok(())
}
