//! `WWW-Authenticate` (RFC 9110 11.6.1, RFC 6750 3): the Bearer challenge's
//! `realm`, `scope`, `error` and `error_description`, so a 401 or 403 can say
//! what the server objected to. Values are tokens or quoted strings that may
//! hold commas, `=` and escapes, so the header is tokenized, not split.

use http::HeaderMap;

/// The parameters of a `Bearer` challenge that matter to a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BearerChallenge {
    pub realm: Option<String>,
    pub scope: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl BearerChallenge {
    /// The first Bearer challenge of every `WWW-Authenticate` field.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(parse_challenges)
            .find(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, params)| {
                let get = |name: &str| {
                    params
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(name))
                        .map(|(_, value)| value.clone())
                };
                BearerChallenge {
                    realm: get("realm"),
                    scope: get("scope"),
                    error: get("error"),
                    error_description: get("error_description"),
                }
            })
    }

    /// `invalid_token: The access token expired`, for error messages.
    pub(crate) fn detail(&self) -> String {
        match (&self.error, &self.error_description) {
            (Some(error), Some(text)) => format!("{error}: {text}"),
            (Some(error), None) => error.clone(),
            (None, Some(text)) => text.clone(),
            (None, None) => "the server sent no error detail".into(),
        }
    }
}

/// The detail of a 401/403 response, whatever its challenge.
pub(crate) fn detail(headers: &HeaderMap) -> (Option<BearerChallenge>, String) {
    match BearerChallenge::from_headers(headers) {
        Some(challenge) => {
            let detail = challenge.detail();
            (Some(challenge), detail)
        }
        None => (None, "the server sent no Bearer challenge".into()),
    }
}

type Challenge = (String, Vec<(String, String)>);

/// Every challenge of one header value: `scheme [token68 | name=value, ...]`.
fn parse_challenges(text: &str) -> Vec<Challenge> {
    let mut lexer = Lexer { rest: text };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        lexer.skip(|c| c == ',' || c == ' ' || c == '\t');
        let Some(word) = lexer.token() else { break };
        lexer.skip(|c| c == ' ' || c == '\t');
        if lexer.peek() == Some('=') && !out.is_empty() {
            // `name=value` of the current challenge.
            lexer.bump();
            lexer.skip(|c| c == ' ' || c == '\t');
            let value = lexer.value();
            if let Some((_, params)) = out.last_mut() {
                params.push((word.to_string(), value));
            }
        } else {
            out.push((word.to_string(), Vec::new()));
            // A token68 credential (`Basic abc==`) belongs to no parameter.
            let save = lexer.rest;
            if lexer.token().is_some() && lexer.peek() == Some('=') {
                let after_equals = lexer.rest.trim_start_matches('=');
                if after_equals.trim_start().is_empty()
                    || after_equals.trim_start().starts_with(',')
                {
                    lexer.rest = after_equals;
                    continue;
                }
            }
            lexer.rest = save;
        }
        if lexer.rest.len() == text.len() {
            break;
        }
    }
    out
}

struct Lexer<'a> {
    rest: &'a str,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self) {
        let mut chars = self.rest.chars();
        chars.next();
        self.rest = chars.as_str();
    }

    fn skip(&mut self, what: impl Fn(char) -> bool) {
        self.rest = self.rest.trim_start_matches(what);
    }

    /// An RFC 9110 token (tchar+), also accepting token68's `/` and `+`.
    fn token(&mut self) -> Option<&'a str> {
        let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/".contains(c);
        let end = self.rest.find(|c| !is_tchar(c)).unwrap_or(self.rest.len());
        if end == 0 {
            return None;
        }
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(word)
    }

    /// A token or a quoted string with `\` escapes.
    fn value(&mut self) -> String {
        if self.peek() != Some('"') {
            return self.token().unwrap_or_default().to_string();
        }
        self.bump();
        let mut out = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        out.push(escaped);
                    }
                }
                '"' => {
                    self.rest = &self.rest[index + 1..];
                    return out;
                }
                other => out.push(other),
            }
        }
        self.rest = "";
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn quoted_values_may_hold_commas_equals_and_escapes() {
        let map = headers(&[
            r#"Bearer realm="a, b=c", error="insufficient_scope", scope="orders:read orders:write", error_description="say \"please\""#,
        ]);
        let challenge = BearerChallenge::from_headers(&map).unwrap();
        assert_eq!(challenge.realm.as_deref(), Some("a, b=c"));
        assert_eq!(challenge.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(challenge.scope.as_deref(), Some("orders:read orders:write"));
        assert_eq!(
            challenge.error_description.as_deref(),
            Some(r#"say "please""#)
        );
    }

    #[test]
    fn bearer_after_other_schemes_and_token_values() {
        let map =
            headers(&[r#"Basic realm="x", Newauth abc==, bearer error=invalid_token,Realm=api"#]);
        let challenge = BearerChallenge::from_headers(&map).unwrap();
        assert_eq!(challenge.error.as_deref(), Some("invalid_token"));
        assert_eq!(challenge.realm.as_deref(), Some("api"));
        assert_eq!(challenge.detail(), "invalid_token");
    }

    #[test]
    fn bearer_in_a_second_field_and_missing_challenge() {
        let map = headers(&[
            r#"Basic realm="x""#,
            r#"Bearer error_description="expired""#,
        ]);
        let challenge = BearerChallenge::from_headers(&map).unwrap();
        assert_eq!(challenge.detail(), "expired");
        assert_eq!(
            BearerChallenge::from_headers(&headers(&["Basic realm=\"x\""])),
            None
        );
        assert_eq!(BearerChallenge::from_headers(&HeaderMap::new()), None);
        let bare = BearerChallenge::from_headers(&headers(&["Bearer"])).unwrap();
        assert_eq!(bare, BearerChallenge::default());
    }

    #[test]
    fn garbage_does_not_loop_or_panic() {
        for text in [
            "=",
            ",,,",
            "Bearer =\"x",
            "Bearer a=\"unterminated",
            "\"",
            "Bearer a=b=c",
        ] {
            let _ = parse_challenges(text);
        }
    }
}
