//! The one request `init` makes: GET the URL with the named auth's
//! credential (as the project defines it), read at most `MAX_BODY` bytes.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use url::Url;

use super::InitError;
use crate::auth::{Credential, Placement, TokenStore};
use crate::plan::AuthPlan;

/// One page is all init needs; a larger body is refused, not buffered.
pub const MAX_BODY: usize = 16 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(30);

/// The first page: the final URL, its headers and its parsed body.
#[derive(Debug)]
pub struct FirstPage {
    pub url: Url,
    pub headers: http::HeaderMap,
    pub body: serde_json::Value,
}

/// The auth to use: its name, its plan and where OAuth tokens are kept.
pub struct AuthUse<'a> {
    pub name: &'a str,
    pub plan: &'a AuthPlan,
    pub store: Arc<dyn TokenStore>,
}

/// GET `url` with `auth` applied. Errors never show the credential: an
/// api_key query parameter is added after `url` is captured for messages.
pub async fn first_page(
    client: &reqwest::Client,
    url: &Url,
    auth: Option<AuthUse<'_>>,
) -> Result<FirstPage, InitError> {
    let shown = url.to_string();
    // Refused before any token request or connection.
    if let Some(auth) = &auth {
        crate::secret::may_carry_credentials(url, &url.origin()).map_err(|refusal| {
            InitError::Refused {
                url: shown.clone(),
                name: auth.name.to_string(),
                refusal,
            }
        })?;
    }
    let fetch_error = |message: String| InitError::Fetch {
        url: shown.clone(),
        message,
    };
    let mut request = client
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| fetch_error(e.to_string()))?;
    if let Some(auth) = auth {
        apply(&mut request, auth, client).await?;
    }
    let mut response = client
        .execute(request)
        .await
        .map_err(|e| fetch_error(crate::fetch::describe(e)))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| fetch_error(crate::fetch::describe(e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(InitError::TooLarge {
                url: shown,
                limit: MAX_BODY,
            });
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text = crate::secret::scrub(&text);
        let snippet: String = text.trim().chars().take(200).collect();
        return Err(InitError::Status {
            url: shown,
            status: status.as_u16(),
            snippet,
        });
    }
    let body = serde_json::from_slice(&body).map_err(|e| InitError::NotJson {
        url: shown.clone(),
        message: e.to_string(),
    })?;
    Ok(FirstPage {
        url: response.url().clone(),
        headers: response.headers().clone(),
        body,
    })
}

async fn apply(
    request: &mut reqwest::Request,
    auth: AuthUse<'_>,
    client: &reqwest::Client,
) -> Result<(), InitError> {
    let failed = |message: String| InitError::Auth {
        name: auth.name.to_string(),
        message,
    };
    let credential = Credential::new(auth.name, auth.plan, client, auth.store.clone())
        .map_err(|e| failed(e.to_string()))?;
    let applied = credential
        .current()
        .await
        .map_err(|e| failed(e.to_string()))?;
    match applied.placement {
        Placement::Header { name, value } => {
            let invalid = || failed("the credential is not a valid header value".into());
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| invalid())?;
            value.set_sensitive(true);
            request.headers_mut().insert(name, value);
        }
        Placement::Query { name, value } => {
            request
                .url_mut()
                .query_pairs_mut()
                .append_pair(&name, value.expose());
        }
    }
    Ok(())
}
