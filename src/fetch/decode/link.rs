//! RFC 8288 `Link` header parsing, for `link_header` pagination.
//!
//! The header is tokenized, never split: commas and semicolons may sit
//! inside `<...>` and quoted strings, and the common split-based parsers
//! (Python requests' `Response.links`) lose links that way. Each relation
//! type of a multi-valued `rel` becomes a link of its own.

use http::HeaderMap;
use url::Url;

/// One link of a Link header, with exactly one relation type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The URI reference exactly as written between `<` and `>`.
    pub target: String,
    /// One relation type of the link's first `rel` parameter, lowercased
    /// (registered types compare case-insensitively); None without `rel`.
    pub rel: Option<String>,
    /// Every parameter, names lowercased, quoted values unescaped.
    pub params: Vec<(String, String)>,
}

impl Link {
    /// True when the link describes another resource than the response
    /// (an `anchor` parameter): such links say nothing about our next page.
    pub fn has_anchor(&self) -> bool {
        self.params.iter().any(|(name, _)| name == "anchor")
    }
}

/// Why a Link header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error(
        "the Link header is malformed at byte {at}: {reason} (hint: check what the server sends; pagination.type = \"next_url\" may fit better)"
    )]
    Malformed { at: usize, reason: &'static str },
    #[error("the Link header's next URI {uri:?} is not a valid URL: {reason}")]
    BadUri { uri: String, reason: String },
}

/// The `rel="next"` target of every Link field of `headers`, resolved
/// against `base` (the URL of the response, after redirects).
pub fn next_link(headers: &HeaderMap, base: &Url) -> Result<Option<Url>, LinkError> {
    for value in headers.get_all(http::header::LINK) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let next = parse_links(&text)?
            .into_iter()
            .find(|link| !link.has_anchor() && link.rel.as_deref() == Some("next"));
        if let Some(link) = next {
            return base
                .join(link.target.trim())
                .map(Some)
                .map_err(|error| LinkError::BadUri {
                    uri: link.target,
                    reason: error.to_string(),
                });
        }
    }
    Ok(None)
}

/// Parse one Link field value into links, one per relation type.
pub fn parse_links(value: &str) -> Result<Vec<Link>, LinkError> {
    let mut cursor = Cursor { text: value, at: 0 };
    let mut links = Vec::new();
    loop {
        cursor.skip_while(|c| c == ',' || is_ows(c));
        if cursor.done() {
            return Ok(links);
        }
        let (target, params) = cursor.link_value()?;
        push_per_rel(&mut links, target, params);
    }
}

/// One link per relation type of the first `rel`; a link without `rel`
/// is kept once (it can never be "next", but callers may want to see it).
fn push_per_rel(links: &mut Vec<Link>, target: String, params: Vec<(String, String)>) {
    let rel = params
        .iter()
        .find(|(name, _)| name == "rel")
        .map(|(_, value)| value.to_ascii_lowercase());
    match rel {
        Some(types) => {
            for kind in types.split_ascii_whitespace() {
                links.push(Link {
                    target: target.clone(),
                    rel: Some(kind.to_string()),
                    params: params.clone(),
                });
            }
        }
        None => links.push(Link {
            target,
            rel: None,
            params,
        }),
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.at >= self.text.len()
    }

    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn skip_while(&mut self, keep: impl Fn(char) -> bool) -> &str {
        let start = self.at;
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
        &self.text[start..self.at]
    }

    fn fail<T>(&self, reason: &'static str) -> Result<T, LinkError> {
        Err(LinkError::Malformed {
            at: self.at,
            reason,
        })
    }

    /// `"<" URI-Reference ">" *( OWS ";" OWS link-param )`, up to the next
    /// top-level comma or the end.
    fn link_value(&mut self) -> Result<(String, Vec<(String, String)>), LinkError> {
        if self.bump() != Some('<') {
            return self.fail("expected '<' to open a link");
        }
        let target = self.skip_while(|c| c != '>').to_string();
        if self.bump() != Some('>') {
            return self.fail("a '<' is never closed by '>'");
        }
        let mut params = Vec::new();
        loop {
            self.skip_while(is_ows);
            match self.peek() {
                None | Some(',') => return Ok((target, params)),
                Some(';') => {
                    self.bump();
                    if let Some(param) = self.param()? {
                        params.push(param);
                    }
                }
                Some(_) => return self.fail("expected ';' or ',' after a link"),
            }
        }
    }

    /// `token BWS [ "=" BWS ( token / quoted-string ) ]`; None for an empty
    /// parameter (`<a>;;rel=next` is sloppy but harmless).
    fn param(&mut self) -> Result<Option<(String, String)>, LinkError> {
        self.skip_while(is_ows);
        let name = self.skip_while(is_tchar).to_ascii_lowercase();
        if name.is_empty() {
            return match self.peek() {
                None | Some(',' | ';') => Ok(None),
                Some(_) => self.fail("expected a parameter name"),
            };
        }
        self.skip_while(is_ows);
        if self.peek() != Some('=') {
            return Ok(Some((name, String::new())));
        }
        self.bump();
        self.skip_while(is_ows);
        let value = match self.peek() {
            Some('"') => self.quoted()?,
            _ => self.skip_while(is_tchar).to_string(),
        };
        Ok(Some((name, value)))
    }

    /// A quoted string with `\` escapes, the quotes removed.
    fn quoted(&mut self) -> Result<String, LinkError> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c) => out.push(c),
                    None => return self.fail("a quoted string ends in '\\'"),
                },
                Some(c) => out.push(c),
                None => return self.fail("a quoted string is never closed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn base() -> Url {
        Url::parse("https://api.example.com/v1/items?page=1").unwrap()
    }

    fn next_of(fields: &[&str]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for field in fields {
            headers.append(http::header::LINK, HeaderValue::from_str(field).unwrap());
        }
        next_link(&headers, &base()).unwrap().map(String::from)
    }

    #[test]
    fn plain_next_among_several_links() {
        let field = r#"<https://api.example.com/v1/items?page=1>; rel="prev", <https://api.example.com/v1/items?page=3>; rel="next""#;
        assert_eq!(
            next_of(&[field]).as_deref(),
            Some("https://api.example.com/v1/items?page=3")
        );
    }

    #[test]
    fn several_link_fields_form_one_list() {
        let got = next_of(&[r#"</a>; rel="first""#, r#"</b>; rel="next""#]);
        assert_eq!(got.as_deref(), Some("https://api.example.com/b"));
    }

    #[test]
    fn commas_and_semicolons_inside_uri_and_quotes() {
        let field = r#"</x?a=1,2;b=3>; title="one, two; three=4"; rel="next""#;
        let links = parse_links(field).unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].target, "/x?a=1,2;b=3");
        assert_eq!(links[0].params[0].1, "one, two; three=4");
        assert_eq!(
            next_of(&[field]).as_deref(),
            Some("https://api.example.com/x?a=1,2;b=3")
        );
    }

    #[test]
    fn quoted_string_escapes_are_unescaped() {
        let links = parse_links(r#"</a>; title="say \"hi\" \\ ok"; rel=next"#).unwrap();
        assert_eq!(links[0].params[0].1, r#"say "hi" \ ok"#);
        assert_eq!(links[0].rel.as_deref(), Some("next"));
    }

    #[test]
    fn several_rel_types_are_links_of_their_own() {
        let links = parse_links(r#"</last>; rel="next last""#).unwrap();
        let rels: Vec<_> = links.iter().map(|l| l.rel.as_deref()).collect();
        assert_eq!(rels, [Some("next"), Some("last")]);
        assert_eq!(
            next_of(&[r#"</last>; rel="last next""#]).as_deref(),
            Some("https://api.example.com/last")
        );
    }

    #[test]
    fn names_and_rel_types_compare_case_insensitively() {
        assert!(next_of(&[r#"</n>; REL="Next""#]).is_some());
        assert!(next_of(&["</n>; Rel=NEXT"]).is_some());
    }

    #[test]
    fn only_the_first_rel_counts() {
        assert_eq!(next_of(&[r#"</n>; rel="prev"; rel="next""#]), None);
    }

    #[test]
    fn links_with_an_anchor_are_ignored() {
        let field = r#"</other>; anchor="/elsewhere"; rel="next", </mine>; rel="next""#;
        assert_eq!(
            next_of(&[field]).as_deref(),
            Some("https://api.example.com/mine")
        );
    }

    #[test]
    fn relative_uris_resolve_against_the_base() {
        assert_eq!(
            next_of(&[r#"<?page=2>; rel="next""#]).as_deref(),
            Some("https://api.example.com/v1/items?page=2")
        );
        assert_eq!(
            next_of(&[r#"<items2>; rel="next""#]).as_deref(),
            Some("https://api.example.com/v1/items2")
        );
    }

    #[test]
    fn no_link_or_no_next_is_none() {
        assert_eq!(next_of(&[]), None);
        assert_eq!(next_of(&[r#"</p>; rel="prev""#]), None);
        assert_eq!(next_of(&[""]), None);
    }

    #[test]
    fn whitespace_and_empty_elements_are_tolerated() {
        let links = parse_links(" , </a> ;rel = next ;; , ,</b>;rel=prev,").unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].rel.as_deref(), Some("next"));
    }

    #[test]
    fn malformed_headers_are_errors() {
        for bad in [
            "/a>; rel=next",
            "</a; rel=next",
            r#"</a>; rel="next"#,
            "</a> x",
        ] {
            assert!(
                matches!(parse_links(bad), Err(LinkError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    fn token() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,8}"
    }

    fn param() -> impl Strategy<Value = (String, String, bool)> {
        (
            token().prop_filter("not rel", |t| !t.eq_ignore_ascii_case("rel")),
            "[ -~]{0,10}",
            any::<bool>(),
        )
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,80}") {
            let _ = parse_links(&text);
        }

        #[test]
        fn generated_links_round_trip(
            links in proptest::collection::vec(
                ("[a-z0-9/?=&;,.:-]{0,20}", proptest::collection::vec("[a-zA-Z]{1,6}", 1..3),
                 proptest::collection::vec(param(), 0..3)),
                0..4,
            )
        ) {
            let mut fields = Vec::new();
            for (target, rels, params) in &links {
                let mut field = format!("<{target}>; rel=\"{}\"", rels.join(" "));
                for (name, value, quote) in params {
                    let plain = !value.is_empty() && value.chars().all(is_tchar);
                    if *quote || !plain {
                        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
                        field.push_str(&format!("; {name}=\"{escaped}\""));
                    } else {
                        field.push_str(&format!(";{name}={value}"));
                    }
                }
                fields.push(field);
            }
            let parsed = parse_links(&fields.join(", ")).unwrap();
            let mut expected = Vec::new();
            for (target, rels, params) in &links {
                for rel in rels {
                    expected.push((target.clone(), rel.to_ascii_lowercase(), params.len()));
                }
            }
            let got: Vec<_> = parsed
                .iter()
                .map(|l| (l.target.clone(), l.rel.clone().unwrap_or_default(), l.params.len() - 1))
                .collect();
            prop_assert_eq!(got, expected);
            for (link, (_, _, params)) in parsed.iter().zip(links.iter().flat_map(|l| std::iter::repeat_n(l, l.1.len()))) {
                for ((name, value), (want_name, want_value, _)) in link.params[1..].iter().zip(params) {
                    prop_assert_eq!(name, &want_name.to_ascii_lowercase());
                    prop_assert_eq!(value, want_value);
                }
            }
        }
    }
}
