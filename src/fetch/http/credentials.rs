//! What counts as a credential in a request: the header names that carry
//! one, and the query parameter rewrite that redacts or strips one. Its own
//! module because sending (`send`), deciding where a stream's requests may
//! go (`context`) and attaching the auth (`authorize`) all need it, and
//! none of them should need the others for it.

use url::Url;

/// Headers that carry credentials: never sent to another origin, nor over
/// plain http to a host that is not loopback, even when the user wrote them
/// into the job's headers; their values are scrubbed from server text.
/// Besides the standard three, any name that says it holds a key, a token,
/// a secret, a password, a session or an auth value (`X-Api-Key`,
/// `Private-Token`, `X-Shopify-Access-Token`, `DD-APPLICATION-KEY`): APIs
/// invent their own, and treating a harmless one (`Idempotency-Key`) as a
/// credential costs only that it stays on the job's origin.
pub(crate) fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["authorization", "cookie", "proxy-authorization"].contains(&name.as_str())
        || ["key", "token", "secret", "password", "session", "auth"]
            .iter()
            .any(|word| name.contains(word))
}

/// Replace the value of every `name` parameter with `replacement`, or drop
/// it. Works on the raw query so every other parameter keeps its exact
/// encoding (a stored cursor URL must be sent back byte for byte).
pub(crate) fn rewrite_query(url: &Url, name: &str, replacement: Option<&str>) -> Url {
    let Some(query) = url.query() else {
        return url.clone();
    };
    let mut kept = Vec::new();
    for piece in query.split('&') {
        let raw_key = piece.split('=').next().unwrap_or(piece);
        let key: String = url::form_urlencoded::parse(raw_key.as_bytes())
            .map(|(k, _)| k.into_owned())
            .next()
            .unwrap_or_default();
        if key != name {
            kept.push(piece.to_string());
        } else if let Some(value) = replacement {
            kept.push(format!("{raw_key}={value}"));
        }
    }
    let mut out = url.clone();
    out.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    out
}
