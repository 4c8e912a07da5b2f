//! Placeholders in a job's request (`{partition}`, `{env.NAME}`,
//! `{mark:epoch}`, ...) and how a value is written where one stands.
//!
//! A placeholder is `{` NAME `}` with NAME made of letters, digits, `_`, `.`
//! and `-`, starting with a letter or `_`. A placeholder of one of the
//! families below may carry a format after a colon, `{mark:%Y-%m-%d}`; the
//! format runs to the next `}`. Only those families take one, so a v1 job's
//! literal `{x:1}` in a query value stays literal. `{{NAME}}` (and
//! `{{NAME:FORMAT}}`) is the literal text inside the outer braces. Any other
//! brace (JSON in a query value, `{ a }`) is literal.
//!
//! A value never changes the structure of the URL it goes into: in the path
//! it is exactly one segment (everything but RFC 3986 unreserved characters
//! percent-encoded, so `/`, `?`, `#`, `%` and space cannot end the segment);
//! in the query or fragment it is percent-encoded the same way. A value of
//! `.` or `..` cannot be a path segment at all (URL parsers resolve it, even
//! written `%2E%2E`), so it is refused. The scheme, host and port never hold
//! a placeholder: the origin a credential is pinned to comes from the
//! template alone.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but RFC 3986 unreserved characters.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Text sent as written (an escaped `{{name}}` already unescaped).
    Text(std::borrow::Cow<'a, str>),
    /// `{name}` or `{name:format}`, at byte `at` of the template.
    Placeholder {
        name: &'a str,
        format: Option<&'a str>,
        at: usize,
    },
}

/// The families whose placeholders may carry a `:format`.
const FORMATTED_FAMILIES: &[&str] = &["mark", "now", "window", "partition", "env", "secret"];

fn takes_format(name: &str) -> bool {
    let family = name.split('.').next().unwrap_or(name);
    FORMATTED_FAMILIES.contains(&family)
}

/// Where in a URL a piece stands; it decides the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UrlPart {
    /// Scheme, userinfo, host, port: no placeholder allowed.
    Origin,
    Path,
    Query,
    Fragment,
}

/// A placeholder at the start of `text` (after its `{`): the name's
/// length and the format, if `text` starts with `NAME}` or `NAME:FORMAT}`.
/// The length of the whole, up to and excluding `}`, is
/// `name + 1 + format` with a format, `name` without.
fn placeholder_at(text: &str) -> Option<(usize, Option<&str>)> {
    let mut chars = text.char_indices();
    let (_, first) = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    for (at, c) in chars {
        match c {
            '}' => return Some((at, None)),
            ':' if takes_format(&text[..at]) => {
                let rest = &text[at + 1..];
                // An empty format (`{now:}`) is a placeholder too, so that
                // validation refuses it instead of it going out as text.
                let end = rest.find(['{', '}'])?;
                return (rest.as_bytes()[end] == b'}').then(|| (at, Some(&rest[..end])));
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') => {}
            _ => return None,
        }
    }
    None
}

/// The length of `NAME` or `NAME:FORMAT` (without the closing brace).
fn inner_len(name_len: usize, format: Option<&str>) -> usize {
    name_len + format.map_or(0, |f| 1 + f.len())
}

/// Split `template` into text and placeholders.
pub(crate) fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut literal_from = 0;
    let mut at = 0;
    while let Some(offset) = template[at..].find('{') {
        let open = at + offset;
        let rest = &template[open + 1..];
        // `{{name}}`: the literal `{name}`.
        if let Some((name_len, format)) = rest.strip_prefix('{').and_then(placeholder_at) {
            let len = inner_len(name_len, format);
            if rest[1 + len + 1..].starts_with('}') {
                push_text(&mut out, &template[literal_from..open]);
                push_text(&mut out, &rest[..1 + len + 1]);
                at = open + 1 + 1 + len + 2;
                literal_from = at;
                continue;
            }
        }
        match placeholder_at(rest) {
            Some((name_len, format)) => {
                push_text(&mut out, &template[literal_from..open]);
                out.push(Piece::Placeholder {
                    name: &rest[..name_len],
                    format,
                    at: open,
                });
                at = open + 1 + inner_len(name_len, format) + 1;
                literal_from = at;
            }
            None => at = open + 1,
        }
    }
    push_text(&mut out, &template[literal_from..]);
    out
}

fn push_text<'a>(out: &mut Vec<Piece<'a>>, text: &'a str) {
    if !text.is_empty() {
        out.push(Piece::Text(text.into()));
    }
}

/// The part of a URL template that byte `at` is in.
pub(crate) fn url_part(template: &str, at: usize) -> UrlPart {
    let authority_start = template.find("://").map_or(0, |i| i + 3);
    if at < authority_start {
        return UrlPart::Origin;
    }
    let after = &template[authority_start..];
    let path_start = authority_start + after.find(['/', '?', '#']).unwrap_or(after.len());
    let query_start = template.find('?').unwrap_or(template.len());
    let fragment_start = template.find('#').unwrap_or(template.len());
    if at < path_start {
        UrlPart::Origin
    } else if at >= fragment_start {
        UrlPart::Fragment
    } else if at >= query_start {
        UrlPart::Query
    } else {
        UrlPart::Path
    }
}

/// `value` written into `part` of a URL.
pub(crate) fn encode_for_url(value: &str, part: UrlPart) -> Result<String, String> {
    match part {
        UrlPart::Origin => Err(format!(
            "a placeholder in the scheme, host or port would let the value {value:?} choose where the request and its credential go"
        )),
        UrlPart::Path if matches!(value, "." | "..") => Err(format!(
            "the value {value:?} cannot be a path segment: URL parsers resolve it to another path"
        )),
        // `/child/{partition}` with "" is `/child/`: the collection, whose
        // records would be written as this partition's.
        UrlPart::Path if value.is_empty() => Err(
            "an empty value cannot stand in the URL path: it would drop a path segment and ask for another resource".to_string(),
        ),
        _ => Ok(utf8_percent_encode(value, COMPONENT).to_string()),
    }
}

/// One placeholder of a template, as `render` hands it to its filler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot<'a> {
    pub name: &'a str,
    pub format: Option<&'a str>,
    /// Byte offset of its `{` in the template.
    pub at: usize,
}

/// `template` with each placeholder replaced by `fill(slot)`.
pub(crate) fn render(
    template: &str,
    mut fill: impl FnMut(Slot<'_>) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template) {
        match piece {
            Piece::Text(text) => out.push_str(&text),
            Piece::Placeholder { name, format, at } => {
                out.push_str(&fill(Slot { name, format, at })?)
            }
        }
    }
    Ok(out)
}

/// The placeholders that appear in `template`.
pub(crate) fn placeholders(template: &str) -> impl Iterator<Item = Slot<'_>> {
    pieces(template)
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Placeholder { name, format, at } => Some(Slot { name, format, at }),
            Piece::Text(_) => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(template: &str) -> Vec<&str> {
        placeholders(template).map(|slot| slot.name).collect()
    }

    #[test]
    fn placeholders_escapes_and_literal_braces() {
        assert_eq!(
            names("https://h/{partition}/x?a={partition.start}"),
            ["partition", "partition.start"]
        );
        assert_eq!(names("{bogus}{partition.id}"), ["bogus", "partition.id"]);
        assert!(names("{\"a\":1} { spaced } {} {1x}").is_empty());
        let literal = |t: &str| render(t, |s| Ok(format!("<{}>", s.name))).unwrap();
        assert_eq!(literal("a{{partition}}b"), "a{partition}b");
        assert_eq!(
            literal("{{partition}}{partition}"),
            "{partition}<partition>"
        );
        assert_eq!(literal("{\"q\":{\"x\":1}}"), "{\"q\":{\"x\":1}}");
        assert_eq!(literal("{{ not a name }}"), "{{ not a name }}");
        assert_eq!(literal("ü{partition}ß"), "ü<partition>ß");
    }

    #[test]
    fn formats_follow_a_colon_only_for_placeholder_families() {
        let slots = |t: &str| {
            placeholders(t)
                .map(|s| (s.name.to_string(), s.format.map(str::to_string)))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            slots("a={mark:epoch}&b={window.start:%Y-%m-%d %H:%M}&c={now}"),
            [
                ("mark".to_string(), Some("epoch".to_string())),
                (
                    "window.start".to_string(),
                    Some("%Y-%m-%d %H:%M".to_string())
                ),
                ("now".to_string(), None),
            ]
        );
        // Not a family that takes a format: literal, as in v1.
        assert!(slots("{x:1} {\"a\":{b:2}}").is_empty());
        // A brace inside a format makes no placeholder; an empty format
        // does (validation refuses it).
        assert!(slots("{mark:a{").is_empty());
        assert_eq!(
            slots("{mark:}"),
            [("mark".to_string(), Some(String::new()))]
        );
        let literal = |t: &str| render(t, |s| Ok(format!("<{}>", s.name))).unwrap();
        assert_eq!(
            literal("{{mark:epoch}}={mark:epoch}"),
            "{mark:epoch}=<mark>"
        );
    }

    #[test]
    fn url_parts() {
        let t = "https://{h}.example:{p}/a/{v}?q={v}&r=1#{v}";
        let part = |needle: &str| url_part(t, t.find(needle).unwrap());
        assert_eq!(part("{h}"), UrlPart::Origin);
        assert_eq!(part("{p}"), UrlPart::Origin);
        assert_eq!(part("/a/{v}"), UrlPart::Path);
        assert_eq!(part("q={v}"), UrlPart::Query);
        assert_eq!(part("#{v}"), UrlPart::Fragment);
        assert_eq!(url_part("https://h?{v}", 10), UrlPart::Query);
    }

    #[test]
    fn values_are_one_component() {
        let path = |v: &str| encode_for_url(v, UrlPart::Path);
        assert_eq!(path("a#").unwrap(), "a%23");
        assert_eq!(path("../x").unwrap(), "..%2Fx");
        assert_eq!(path("b?c=1").unwrap(), "b%3Fc%3D1");
        assert_eq!(path("d e/f").unwrap(), "d%20e%2Ff");
        assert_eq!(path("%2F").unwrap(), "%252F");
        assert_eq!(path("ü/ß").unwrap(), "%C3%BC%2F%C3%9F");
        assert!(path("..").is_err() && path(".").is_err());
        assert!(path("").is_err(), "an empty segment is another resource");
        assert_eq!(encode_for_url("..", UrlPart::Query).unwrap(), "..");
        assert_eq!(
            encode_for_url("a&b=c", UrlPart::Query).unwrap(),
            "a%26b%3Dc"
        );
        assert!(encode_for_url("x", UrlPart::Origin).is_err());
    }
}
