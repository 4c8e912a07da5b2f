//! RFC 6901 JSON pointers over raw JSON text.
//!
//! Records are stored exactly as the server sent them, so the records array
//! is found without building a `Value` of the body: each level along the
//! pointer is read as a map or list of `RawValue`s (borrowed slices of the
//! body) and only the step taken is looked at further.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A pointer that is not RFC 6901 syntax. Plan validates pointers, so this
/// only shows up for hand-built plans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    #[error(
        "JSON pointer {0:?} must be empty or start with '/' (hint: write \"/data\", not \"data\")"
    )]
    NoLeadingSlash(String),
    #[error(
        "JSON pointer {0:?} has a '~' not followed by 0 or 1 (hint: write ~0 for '~' and ~1 for '/')"
    )]
    BadEscape(String),
}

/// The reference tokens of `pointer`, unescaped (`~1` is `/`, `~0` is `~`).
pub fn tokens(pointer: &str) -> Result<Vec<String>, PointerError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(PointerError::NoLeadingSlash(pointer.to_string()));
    };
    rest.split('/')
        .map(|token| unescape(token).ok_or_else(|| PointerError::BadEscape(pointer.to_string())))
        .collect()
}

fn unescape(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// An array index as RFC 6901 allows it: digits, no leading zero (`-`, the
/// element after the last, never exists in a document we read).
pub(crate) fn index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

/// The raw value at `tokens` inside `raw`, or None when a step does not
/// exist. `raw` must already be valid JSON (a `RawValue` is).
pub fn raw_at<'a>(raw: &'a RawValue, tokens: &[String]) -> Option<&'a RawValue> {
    let mut here = raw;
    for token in tokens {
        here = step(here, token)?;
    }
    Some(here)
}

fn step<'a>(raw: &'a RawValue, token: &str) -> Option<&'a RawValue> {
    match first_byte(raw) {
        b'{' => {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            de.deserialize_map(MemberOf { token }).ok()?
        }
        b'[' => {
            let list: Vec<&'a RawValue> = serde_json::from_str(raw.get()).ok()?;
            list.get(index(token)?).copied()
        }
        _ => None,
    }
}

/// One pass over an object's members that keeps only the value of the
/// member named `token` (the last one when a key repeats, as a parsed
/// `Value` would). Unlike a map of every member, it allocates nothing for
/// the other members: this runs once per record for its primary key.
struct MemberOf<'t> {
    token: &'t str,
}

impl<'de> Visitor<'de> for MemberOf<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(self.token))? {
            match matches {
                true => found = Some(map.next_value::<&'de RawValue>()?),
                false => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// Whether an object key (unescaped) equals the token.
struct KeyIs<'t>(&'t str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// The first byte of a raw value (RawValue text carries no leading space).
pub fn first_byte(raw: &RawValue) -> u8 {
    raw.get().trim_start().bytes().next().unwrap_or(b' ')
}

/// The elements of a raw JSON array, each exactly as written; None when
/// `raw` is not an array.
pub fn raw_elements(raw: &RawValue) -> Option<Vec<&RawValue>> {
    match first_byte(raw) {
        b'[' => serde_json::from_str(raw.get()).ok(),
        _ => None,
    }
}

/// "an object", "a string", ...: what a value is, for error messages.
pub fn describe(raw: &RawValue) -> &'static str {
    match first_byte(raw) {
        b'{' => "an object",
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn at(json: &str, pointer: &str) -> Option<String> {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        raw_at(raw, &tokens(pointer).unwrap()).map(|r| r.get().to_string())
    }

    #[test]
    fn raw_text_is_kept_exactly() {
        let body = r#"{ "meta": {"n": 1}, "data": [ {"id": 1.50, "b":"\u00e9"} , 2 ] }"#;
        assert_eq!(
            at(body, "/data/0").as_deref(),
            Some(r#"{"id": 1.50, "b":"\u00e9"}"#)
        );
        assert_eq!(at(body, "/data/1").as_deref(), Some("2"));
        assert_eq!(at(body, "").as_deref(), Some(body.trim()));
    }

    #[test]
    fn escapes_and_indices() {
        let body = r#"{"a/b": {"m~n": [10, 20]}, "": 5, "01": 7}"#;
        assert_eq!(at(body, "/a~1b/m~0n/1").as_deref(), Some("20"));
        assert_eq!(at(body, "/").as_deref(), Some("5"));
        assert_eq!(at(body, "/01").as_deref(), Some("7"));
        assert_eq!(at(body, "/a~1b/m~0n/01"), None);
        assert_eq!(at(body, "/a~1b/m~0n/-"), None);
        assert_eq!(at(body, "/a~1b/m~0n/2"), None);
        assert_eq!(at(body, "/missing"), None);
        assert_eq!(at(body, "/a~1b/m~0n/0/deeper"), None);
    }

    #[test]
    fn repeated_and_escaped_keys_match_a_parsed_value() {
        let body = r#"{"id": 1, "x": {"id": 0}, "\u0069d": [2, "\u00e9"], "k\"q": true}"#;
        let value: Value = serde_json::from_str(body).unwrap();
        assert_eq!(at(body, "/id").as_deref(), Some(r#"[2, "\u00e9"]"#));
        for pointer in ["/id", "/id/1", "/x/id", "/k\"q", "/k", "/id/0/x"] {
            let ours = at(body, pointer).map(|raw| serde_json::from_str::<Value>(&raw).unwrap());
            assert_eq!(ours.as_ref(), value.pointer(pointer), "{pointer}");
        }
    }

    #[test]
    fn bad_pointers_are_errors() {
        assert!(matches!(
            tokens("data"),
            Err(PointerError::NoLeadingSlash(_))
        ));
        assert!(matches!(tokens("/a~2"), Err(PointerError::BadEscape(_))));
        assert!(matches!(tokens("/a~"), Err(PointerError::BadEscape(_))));
        assert_eq!(tokens("/~01").unwrap(), ["~1"]);
    }

    #[test]
    fn elements_and_descriptions() {
        let raw: &RawValue = serde_json::from_str(r#"[ {"a":1}, "x" ]"#).unwrap();
        let items = raw_elements(raw).unwrap();
        assert_eq!(items[0].get(), r#"{"a":1}"#);
        let object: &RawValue = serde_json::from_str(r#"{"a":[]}"#).unwrap();
        assert!(raw_elements(object).is_none());
        assert_eq!(describe(object), "an object");
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z~/]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z~/0-9]{0,3}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every pointer that exists in `value`, plus a few that do not.
    fn pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
        out.push(prefix.clone());
        out.push(format!("{prefix}/nope"));
        match value {
            Value::Array(items) => {
                out.push(format!("{prefix}/{}", items.len()));
                for (i, item) in items.iter().enumerate() {
                    pointers(item, format!("{prefix}/{i}"), out);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    pointers(item, format!("{prefix}/{escaped}"), out);
                }
            }
            _ => {}
        }
    }

    proptest! {
        #[test]
        fn raw_extraction_agrees_with_value_pointer(v in value(), pretty in any::<bool>()) {
            let text = match pretty {
                true => serde_json::to_string_pretty(&v).unwrap(),
                false => v.to_string(),
            };
            let mut all = Vec::new();
            pointers(&v, String::new(), &mut all);
            for pointer in all {
                let ours = at(&text, &pointer).map(|raw| serde_json::from_str::<Value>(&raw).unwrap());
                prop_assert_eq!(ours.as_ref(), v.pointer(&pointer), "pointer {}", pointer);
            }
        }
    }
}
