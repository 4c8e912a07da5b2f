//! The scrubber: every credential value in use, removed from text a server
//! sent (bodies, headers, messages built from them) before apisync logs,
//! stores or shows it. An API that echoes the request URL in a 400 body
//! would otherwise copy a query-string key into stderr, the runs table and
//! `status`.
//!
//! Credentials are registered where they are resolved or issued (secret
//! sources, the basic auth header, OAuth tokens as they arrive); the
//! registry is process-wide because server text reaches errors far from the
//! credential that provoked it. Each value is removed in the forms a server
//! is likely to echo it in: raw, URL-encoded (`%XX` in upper and lower case,
//! space as `%20` or `+`) and JSON-escaped. Values shorter than
//! [`MIN_SCRUBBED_LEN`] characters are not registered: removing "ab" from
//! every message would mangle text and hide nothing worth hiding.

use std::borrow::Cow;
use std::sync::{OnceLock, RwLock};

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};

use super::Secret;

/// What a removed credential reads as.
pub const MASK: &str = "***";

/// Shorter values are not scrubbed (see the module doc).
pub const MIN_SCRUBBED_LEN: usize = 4;

/// RFC 3986 unreserved characters stay as they are; all else is encoded.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// What the WHATWG URL parser encodes in a query (and so what a URL that a
/// server echoes back may hold).
const QUERY: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>');
/// ... in a path.
const PATH: &AsciiSet = &QUERY.add(b'?').add(b'`').add(b'{').add(b'}');
/// ... in userinfo.
const USERINFO: &AsciiSet = &PATH
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

/// How many issued values (OAuth access tokens, rotated refresh tokens)
/// are kept. They change for the whole life of a run (a 1 s token is a new
/// value every second), so keeping all of them would grow without bound;
/// the last few are the ones a server can still echo.
const ISSUED_KEPT: usize = 32;

#[derive(Default)]
struct Registry {
    /// Forms of values resolved from the configuration: kept for the process.
    configured: Vec<String>,
    /// Forms of each issued value, oldest first, at most [`ISSUED_KEPT`].
    issued: std::collections::VecDeque<Vec<String>>,
    /// Every form of both, longest first (so "Bearer abc" is removed whole
    /// before "abc"): what [`scrub`] walks.
    all: Vec<String>,
}

impl Registry {
    fn knows(&self, value: &str) -> bool {
        self.all.iter().any(|form| form == value)
    }

    fn rebuild(&mut self) {
        let mut all: Vec<String> = self.configured.clone();
        for forms in &self.issued {
            all.extend(forms.iter().cloned());
        }
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        self.all = all;
    }
}

fn registry() -> &'static RwLock<Registry> {
    static REGISTRY: OnceLock<RwLock<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(Registry::default()))
}

fn scrubbed_forms(value: &str) -> Vec<String> {
    encodings(value)
        .into_iter()
        .filter(|form| form.chars().count() >= MIN_SCRUBBED_LEN)
        .collect()
}

/// Remember `secret`, a value of the configuration (a token, key, password,
/// client secret), so that [`scrub`] removes it for the rest of the process.
pub fn register(secret: &Secret) {
    let value = secret.expose();
    if value.chars().count() < MIN_SCRUBBED_LEN || read().knows(value) {
        return;
    }
    let mut registry = write();
    registry.configured.extend(scrubbed_forms(value));
    registry.rebuild();
}

/// Remember `secret`, a value a token endpoint issued (an access token, a
/// rotated refresh token): kept among the last [`ISSUED_KEPT`] issued, so a
/// long run of short-lived tokens keeps memory bounded. Cheap when the value
/// is already known (OAuth tokens are registered per request).
pub fn register_issued(secret: &Secret) {
    let value = secret.expose();
    if value.chars().count() < MIN_SCRUBBED_LEN || read().knows(value) {
        return;
    }
    let mut registry = write();
    registry.issued.push_back(scrubbed_forms(value));
    while registry.issued.len() > ISSUED_KEPT {
        registry.issued.pop_front();
    }
    registry.rebuild();
}

fn read() -> std::sync::RwLockReadGuard<'static, Registry> {
    registry()
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write() -> std::sync::RwLockWriteGuard<'static, Registry> {
    registry()
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The length in bytes of the longest registered form (0 when none is):
/// text cut to N bytes for display is scrubbed on N + this many first, so
/// that no credential is cut in two before the scrubber sees it.
pub fn longest_form() -> usize {
    read().all.first().map_or(0, String::len)
}

/// Whether `value` is, whole, a credential in use (in any of its forms):
/// a query parameter holding one is not stored with a saved position.
pub fn is_credential(value: &str) -> bool {
    value.chars().count() >= MIN_SCRUBBED_LEN && read().knows(value)
}

/// Whether `text` holds a credential in use anywhere in it (a cursor
/// `p2:<token>`, a next URL with the key in its path): such text is never
/// saved with a position, nor sent back.
pub fn holds_credential(text: &str) -> bool {
    matches!(scrub(text), Cow::Owned(_))
}

/// `text` with every registered credential replaced by [`MASK`]; borrowed
/// (no copy) when there is none in it.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let registry = read();
    let mut out = Cow::Borrowed(text);
    for form in registry.all.iter() {
        if out.contains(form.as_str()) {
            out = Cow::Owned(out.replace(form.as_str(), MASK));
        }
    }
    out
}

/// [`scrub`] for bytes (a log line): lossy UTF-8 only when there is
/// something to remove.
pub fn scrub_bytes(bytes: &[u8]) -> Cow<'_, [u8]> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        let text = String::from_utf8_lossy(bytes);
        return Cow::Owned(scrub(&text).into_owned().into_bytes());
    };
    match scrub(text) {
        Cow::Borrowed(_) => Cow::Borrowed(bytes),
        Cow::Owned(clean) => Cow::Owned(clean.into_bytes()),
    }
}

/// The forms a server may echo `value` in.
fn encodings(value: &str) -> Vec<String> {
    let mut out = vec![value.to_string()];
    let form: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
    out.push(form);
    for set in [STRICT, NON_ALPHANUMERIC, QUERY, PATH, USERINFO] {
        out.push(utf8_percent_encode(value, set).to_string());
    }
    let lower: Vec<String> = out.iter().map(|form| lower_hex(form)).collect();
    out.extend(lower);
    if let Ok(json) = serde_json::to_string(value) {
        let inner = &json[1..json.len() - 1];
        out.push(inner.to_string());
        out.push(inner.replace('/', "\\/"));
    }
    out.sort();
    out.dedup();
    out
}

/// `%2F` -> `%2f` (some encoders write lower-case hex digits).
fn lower_hex(form: &str) -> String {
    let mut out = String::with_capacity(form.len());
    let mut rest = form;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        out.push_str(&escape.to_ascii_lowercase());
        rest = &rest[at + escape.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_registered_value_is_removed() {
        let secret = "sk_live a/b+c?d=é";
        register(&Secret::new(secret));
        let echoes = [
            secret.to_string(),
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
            lower_hex(&utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string()),
            utf8_percent_encode(secret, QUERY).to_string(),
            url::Url::parse(&format!("https://h/p?k={secret}"))
                .unwrap()
                .query()
                .unwrap()
                .trim_start_matches("k=")
                .to_string(),
            serde_json::to_string(secret).unwrap(),
        ];
        for echo in echoes {
            let text = format!("the server said: {echo}!");
            let clean = scrub(&text);
            assert!(
                !clean.contains(&echo) && clean.contains(MASK),
                "{echo} -> {clean}"
            );
            assert!(!clean.contains("sk_live"), "{echo} -> {clean}");
        }
    }

    #[test]
    fn longer_forms_go_first_and_clean_text_is_not_copied() {
        register(&Secret::new("tok-9b1e"));
        register(&Secret::new("Bearer tok-9b1e"));
        assert_eq!(scrub("got Bearer tok-9b1e back"), "got *** back");
        assert!(matches!(scrub("plain words only"), Cow::Borrowed(_)));
        assert!(matches!(scrub_bytes(b"plain line\n"), Cow::Borrowed(_)));
        assert_eq!(&*scrub_bytes(b"x tok-9b1e y"), b"x *** y");
    }

    #[test]
    fn issued_values_are_kept_only_as_the_last_few_configured_ones_for_good() {
        register(&Secret::new("configured-7c41"));
        for n in 0..ISSUED_KEPT + 8 {
            register_issued(&Secret::new(format!("issued-token-{n:04}")));
        }
        assert_eq!(scrub("issued-token-0000"), "issued-token-0000", "dropped");
        let last = format!("issued-token-{:04}", ISSUED_KEPT + 7);
        assert_eq!(scrub(&last), MASK);
        assert_eq!(scrub("configured-7c41"), MASK, "configuration stays");
        assert!(read().issued.len() <= ISSUED_KEPT);
    }

    #[test]
    fn short_values_are_not_registered() {
        register(&Secret::new("ab1"));
        assert_eq!(scrub("ab1 stays"), "ab1 stays");
    }
}
