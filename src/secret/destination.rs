//! Where a credential may go: the one rule every path that sends one (a
//! run's requests, `init`, job headers that carry credentials, the OAuth
//! token endpoint) asks before it attaches anything.
//!
//! The rule: the URL is http or https; it has the origin (scheme, host,
//! port) the credential is pinned to; and it is https, or plain http to a
//! loopback address (tests and local sidecars, where nothing crosses a
//! network). The checks run before any connection is made.

use url::{Host, Origin, Url};

/// Why a URL may not carry a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not http or https: nothing we send credentials over.
    #[error("{scheme}: URLs never carry credentials (hint: use an https URL)")]
    NotWeb { scheme: String },
    /// Another origin than the one the credential belongs to.
    #[error("{target} is another origin than {pinned}, the only one the credential is sent to")]
    OtherOrigin { target: String, pinned: String },
    /// Plain http to a host that is not loopback: anyone on the path could
    /// read the credential.
    #[error(
        "credentials go over plain http only to loopback addresses (127.0.0.1, ::1, localhost) (hint: use https)"
    )]
    PlainHttp,
}

/// May a request to `url` carry a credential pinned to `pinned`? Ok, or
/// why not. `pinned` is the origin of the URL the credential was configured
/// for (a job's URL template, the token URL, the URL given to `init`).
pub(crate) fn may_carry_credentials(url: &Url, pinned: &Origin) -> Result<(), Refusal> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Refusal::NotWeb {
            scheme: url.scheme().to_string(),
        });
    }
    if &url.origin() != pinned {
        return Err(Refusal::OtherOrigin {
            target: url.origin().ascii_serialization(),
            pinned: pinned.ascii_serialization(),
        });
    }
    if url.scheme() == "http" && !is_loopback(url) {
        return Err(Refusal::PlainHttp);
    }
    Ok(())
}

/// 127.0.0.0/8, ::1 and "localhost" (which resolvers map to loopback).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, pinned: &str) -> Result<(), Refusal> {
        let pinned = Url::parse(pinned).unwrap().origin();
        may_carry_credentials(&Url::parse(url).unwrap(), &pinned)
    }

    #[test]
    fn the_rule_as_a_table() {
        use Refusal::*;
        let other = |target: &str, pinned: &str| OtherOrigin {
            target: target.into(),
            pinned: pinned.into(),
        };
        let cases: &[(&str, &str, Result<(), Refusal>)] = &[
            (
                "https://api.example.com/v1?page=2",
                "https://api.example.com/v1",
                Ok(()),
            ),
            (
                "https://api.example.com:443/x",
                "https://api.example.com/",
                Ok(()),
            ),
            ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/", Ok(())),
            ("http://127.9.9.9/x", "http://127.9.9.9/", Ok(())),
            ("http://[::1]:9/x", "http://[::1]:9/", Ok(())),
            ("http://LocalHost/x", "http://localhost/", Ok(())),
            (
                "http://example.invalid/",
                "http://example.invalid/",
                Err(PlainHttp),
            ),
            ("http://10.0.0.1/", "http://10.0.0.1/", Err(PlainHttp)),
            (
                "http://localhost.example.com/",
                "http://localhost.example.com/",
                Err(PlainHttp),
            ),
            (
                "https://cdn.example.com/x",
                "https://api.example.com/",
                Err(other("https://cdn.example.com", "https://api.example.com")),
            ),
            (
                "http://api.example.com/x",
                "https://api.example.com/",
                Err(other("http://api.example.com", "https://api.example.com")),
            ),
            (
                "https://api.example.com:8443/x",
                "https://api.example.com/",
                Err(other(
                    "https://api.example.com:8443",
                    "https://api.example.com",
                )),
            ),
            (
                "http://127.0.0.1:9/x",
                "http://127.0.0.1:8/",
                Err(other("http://127.0.0.1:9", "http://127.0.0.1:8")),
            ),
            (
                "ftp://api.example.com/x",
                "https://api.example.com/",
                Err(NotWeb {
                    scheme: "ftp".into(),
                }),
            ),
        ];
        for (url, pinned, expected) in cases {
            assert_eq!(&check(url, pinned), expected, "{url} pinned to {pinned}");
        }
    }

    #[test]
    fn refusals_read_as_sentences_with_a_hint() {
        let text = check("http://example.invalid/", "http://example.invalid/")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("plain http") && text.contains("hint: use https"),
            "{text}"
        );
    }
}
