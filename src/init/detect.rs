//! Pure detection on a first page: where the records are, how the API
//! pages (as the plan's `PaginationKind`, the type fetch pages by), which
//! field identifies a record. Each finding carries what it saw, which
//! becomes the comment beside the line it produced.

use serde_json::{Map, Value};
use url::Url;

use crate::plan::{DEFAULT_LIMIT, DEFAULT_PAGE_START, PaginationKind, ParamLocation};

/// A detected value (or None) and what was seen, for the comment.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding<T> {
    pub value: Option<T>,
    pub saw: String,
}

impl<T> Finding<T> {
    fn found(value: T, saw: impl Into<String>) -> Self {
        Finding {
            value: Some(value),
            saw: saw.into(),
        }
    }

    fn missing(saw: impl Into<String>) -> Self {
        Finding {
            value: None,
            saw: saw.into(),
        }
    }
}

/// Where the records are: a JSON pointer ("" for the body itself) and how
/// many the first page held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsAt {
    pub pointer: String,
    pub count: usize,
}

/// Keys that commonly wrap the records one level down (`{"data": {"items": [...]}}`).
const WRAPPERS: &[&str] = &["data", "result", "results", "response", "payload", "items"];

/// The body itself if it is an array, else the largest array of objects at
/// the top level or one level under a common wrapper key.
pub fn records_path(body: &Value) -> Finding<RecordsAt> {
    let object = match body {
        Value::Array(items) => {
            return Finding::found(
                RecordsAt {
                    pointer: String::new(),
                    count: items.len(),
                },
                format!("the body is an array of {} item(s)", items.len()),
            );
        }
        Value::Object(object) => object,
        _ => return Finding::missing("the body is neither an object nor an array"),
    };
    let mut arrays = arrays_of_objects(object, "");
    for key in WRAPPERS {
        if let Some(Value::Object(inner)) = object.get(*key) {
            arrays.extend(arrays_of_objects(inner, &format!("/{}", escape(key))));
        }
    }
    // Largest first; among equals, the one found first (top level).
    let best = arrays
        .iter()
        .enumerate()
        .max_by_key(|(i, (_, n))| (*n, std::cmp::Reverse(*i)))
        .map(|(_, a)| a.clone());
    match best {
        Some((pointer, count)) => {
            let others: Vec<String> = arrays
                .iter()
                .filter(|(p, _)| *p != pointer)
                .map(|(p, n)| format!("{p} ({n})"))
                .collect();
            let also = if others.is_empty() {
                String::new()
            } else {
                format!("; also saw {}", others.join(", "))
            };
            let saw =
                format!("{pointer} holds {count} object(s), the largest array of objects{also}");
            Finding::found(RecordsAt { pointer, count }, saw)
        }
        None => {
            Finding::missing("no array of objects at the top level or under data/items/results")
        }
    }
}

/// (pointer, length) of every array of objects directly in `object`.
fn arrays_of_objects(object: &Map<String, Value>, prefix: &str) -> Vec<(String, usize)> {
    object
        .iter()
        .filter_map(|(key, value)| match value {
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                Some((format!("{prefix}/{}", escape(key)), items.len()))
            }
            _ => None,
        })
        .collect()
}

/// One scalar (or short) field outside the records, with its pointer.
#[derive(Debug)]
struct Field<'a> {
    pointer: String,
    /// The key lowercased with `_`, `-`, `.`, `@` and `$` removed.
    key: String,
    /// The key as written, for guessing parameter names.
    raw: &'a str,
    value: &'a Value,
}

/// Every non-array field up to three levels deep, outside the records.
fn fields<'a>(body: &'a Value, skip: &str) -> Vec<Field<'a>> {
    let mut out = Vec::new();
    if let Value::Object(object) = body {
        walk(object, "", skip, 0, &mut out);
    }
    out
}

fn walk<'a>(
    object: &'a Map<String, Value>,
    prefix: &str,
    skip: &str,
    depth: usize,
    out: &mut Vec<Field<'a>>,
) {
    for (key, value) in object {
        let pointer = format!("{prefix}/{}", escape(key));
        if pointer == skip {
            continue;
        }
        match value {
            Value::Object(inner) if depth < 2 => walk(inner, &pointer, skip, depth + 1, out),
            Value::Array(_) | Value::Object(_) => {}
            _ => out.push(Field {
                pointer,
                key: normalize(key),
                raw: key,
                value,
            }),
        }
    }
}

fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | '@' | '$'))
        .flat_map(char::to_lowercase)
        .collect()
}

const NEXT_URL_KEYS: &[&str] = &[
    "next",
    "nexturl",
    "nextlink",
    "nextpage",
    "nextpageurl",
    "nexthref",
    "odatanextlink",
];
const CURSOR_KEYS: &[&str] = &[
    "nextcursor",
    "cursor",
    "nextpagetoken",
    "pagetoken",
    "nexttoken",
    "endcursor",
    "after",
    "continuationtoken",
    "next",
];
const HAS_MORE_KEYS: &[&str] = &["hasmore", "hasnextpage", "hasnext", "more"];
const TOTAL_PAGES_KEYS: &[&str] = &["totalpages", "pagecount", "lastpage", "numpages", "pages"];
const TOTAL_KEYS: &[&str] = &[
    "total",
    "totalcount",
    "count",
    "totalresults",
    "totalitems",
    "totalrecords",
    "numfound",
];
const OFFSET_PARAMS: &[&str] = &["offset", "skip", "start"];
const LIMIT_PARAMS: &[&str] = &[
    "limit",
    "per_page",
    "page_size",
    "pagesize",
    "pageSize",
    "size",
    "count",
];
const PAGE_PARAMS: &[&str] = &["page", "page_number", "pageNumber", "p"];

fn looks_like_url(text: &str) -> bool {
    text.starts_with("http://")
        || text.starts_with("https://")
        || text.starts_with('/')
        || text.starts_with('?')
}

fn find<'a, 'b>(
    fields: &'b [Field<'a>],
    keys: &[&str],
    pred: impl Fn(&Value) -> bool,
) -> Option<&'b Field<'a>> {
    keys.iter()
        .find_map(|key| fields.iter().find(|f| f.key == *key && pred(f.value)))
}

/// The first query parameter of `url` among `names` and its value.
fn query_param(url: &Url, names: &[&str]) -> Option<(String, String)> {
    names.iter().find_map(|name| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
    })
}

/// The pagination type and the optional `has_more_path`, from the Link
/// header (`link_next`: was there a rel="next"?), the body's fields outside
/// the records, and the request URL's query.
pub fn pagination(
    body: &Value,
    link_next: bool,
    url: &Url,
    records: &str,
) -> (Finding<PaginationKind>, Option<Finding<String>>) {
    let fields = fields(body, records);
    let has_more = find(&fields, HAS_MORE_KEYS, Value::is_boolean)
        .map(|f| Finding::found(f.pointer.clone(), format!("{} is {}", f.pointer, f.value)));
    let kind = match (detect_type(&fields, link_next, url), &has_more) {
        // has_more alone says "there is more" but not how to ask for it.
        (
            Finding {
                value: Some(PaginationKind::None),
                ..
            },
            Some(more),
        ) => Finding::missing(format!(
            "{} says whether more pages follow, but no cursor, next link, total or page parameter says how to ask for them (set [pagination] by hand; for Stripe-style APIs: type = \"cursor\", cursor_from = \"last_record\")",
            more.value.as_deref().unwrap_or_default()
        )),
        (kind, _) => kind,
    };
    (kind, has_more)
}

fn detect_type(fields: &[Field<'_>], link_next: bool, url: &Url) -> Finding<PaginationKind> {
    if link_next {
        return Finding::found(
            PaginationKind::LinkHeader,
            "a Link header with rel=\"next\"",
        );
    }
    let is_url = |v: &Value| v.as_str().is_some_and(looks_like_url);
    if let Some(f) = find(fields, NEXT_URL_KEYS, is_url) {
        let saw = format!("{} holds a URL ({})", f.pointer, f.value);
        return Finding::found(
            PaginationKind::NextUrl {
                next_url_path: f.pointer.clone(),
            },
            saw,
        );
    }
    let is_token = |v: &Value| {
        v.as_str()
            .is_some_and(|s| !s.is_empty() && !looks_like_url(s))
    };
    if let Some(f) = find(fields, CURSOR_KEYS, is_token) {
        let param = cursor_param(f.raw);
        let saw = format!(
            "{} holds a token; the query parameter \"{param}\" is a guess (check the API's documentation)",
            f.pointer
        );
        return Finding::found(
            PaginationKind::Cursor {
                cursor_path: f.pointer.clone(),
                cursor_param: param,
                cursor_in: ParamLocation::Query,
                from_last_record: false,
                cursor_header: None,
            },
            saw,
        );
    }
    let number = |v: &Value| v.is_u64();
    let total_pages = find(fields, TOTAL_PAGES_KEYS, number);
    let total = find(fields, TOTAL_KEYS, number);
    let page_query = query_param(url, PAGE_PARAMS);
    let offset_query = query_param(url, OFFSET_PARAMS);
    let limit_query = query_param(url, LIMIT_PARAMS);
    if total_pages.is_some() || (page_query.is_some() && offset_query.is_none()) {
        return page(total_pages, page_query, limit_query);
    }
    if offset_query.is_some() || total.is_some() {
        return offset(total, offset_query, limit_query);
    }
    Finding::found(
        PaginationKind::None,
        "no Link header, no next or cursor field, no total or page count and no page or offset parameter: one request is taken to return everything (set [pagination] by hand if not)",
    )
}

fn page(
    total_pages: Option<&Field<'_>>,
    page: Option<(String, String)>,
    size: Option<(String, String)>,
) -> Finding<PaginationKind> {
    let mut saw = Vec::new();
    if let Some(f) = total_pages {
        saw.push(format!("{} = {}", f.pointer, f.value));
    }
    match &page {
        Some((name, value)) => saw.push(format!("the URL's {name}={value}")),
        None => saw.push("no page parameter in the URL (\"page\" is a guess)".into()),
    }
    let size_value = size.as_ref().and_then(|(_, v)| v.parse().ok());
    Finding::found(
        PaginationKind::Page {
            page_param: page.map_or_else(|| "page".to_string(), |(name, _)| name),
            start: DEFAULT_PAGE_START,
            size_param: size.filter(|_| size_value.is_some()).map(|(name, _)| name),
            size: size_value,
            total_pages_path: total_pages.map(|f| f.pointer.clone()),
            param_in: ParamLocation::Query,
        },
        saw.join("; "),
    )
}

fn offset(
    total: Option<&Field<'_>>,
    offset: Option<(String, String)>,
    limit: Option<(String, String)>,
) -> Finding<PaginationKind> {
    let mut saw = Vec::new();
    if let Some(f) = total {
        saw.push(format!("{} = {}", f.pointer, f.value));
    }
    match &offset {
        Some((name, value)) => saw.push(format!("the URL's {name}={value}")),
        None => {
            saw.push("no offset parameter in the URL (\"offset\" and \"limit\" are guesses)".into())
        }
    }
    let limit_value = limit.as_ref().and_then(|(_, v)| v.parse().ok());
    Finding::found(
        PaginationKind::Offset {
            offset_param: offset.map_or_else(|| "offset".to_string(), |(name, _)| name),
            limit_param: limit
                .filter(|_| limit_value.is_some())
                .map_or_else(|| "limit".to_string(), |(name, _)| name),
            limit: limit_value.unwrap_or(DEFAULT_LIMIT),
            total_path: total.map(|f| f.pointer.clone()),
            total_header: None,
            param_in: ParamLocation::Query,
        },
        saw.join("; "),
    )
}

/// `next_cursor` -> `cursor`, `nextPageToken` -> `pageToken`, `after` -> `after`.
fn cursor_param(key: &str) -> String {
    let rest = key
        .strip_prefix("next_")
        .or_else(|| key.strip_prefix("next-"))
        .or_else(|| {
            key.strip_prefix("next")
                .filter(|r| r.starts_with(|c: char| c.is_ascii_uppercase()))
        });
    match rest {
        Some(rest) => {
            let mut chars = rest.chars();
            chars
                .next()
                .map(|c| c.to_lowercase().chain(chars).collect())
                .unwrap_or_else(|| "cursor".into())
        }
        None if key == "next" || key == "endCursor" => match key {
            "endCursor" => "after".into(),
            _ => "cursor".into(),
        },
        None => key.to_string(),
    }
}

/// A field present in every record with distinct scalar values: `id` first,
/// then names that end in id/uuid/key.
pub fn primary_key(records: &[Value]) -> Finding<String> {
    let Some(Value::Object(first)) = records.first() else {
        return Finding::missing("no records on the first page to look at");
    };
    let mut candidates: Vec<&String> = first.keys().filter(|k| k.as_str() == "id").collect();
    candidates.extend(first.keys().filter(|k| {
        let n = normalize(k);
        k.as_str() != "id" && (n.ends_with("id") || n.ends_with("uuid") || n.ends_with("key"))
    }));
    for key in candidates {
        let values: Option<Vec<String>> = records
            .iter()
            .map(|r| match r.get(key) {
                Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.to_string()),
                _ => None,
            })
            .collect();
        let Some(mut values) = values else { continue };
        let total = values.len();
        values.sort();
        values.dedup();
        if values.len() == total {
            let saw = match total {
                1 => "only one record to look at: uniqueness not checked".to_string(),
                n => format!("all {n} records have a distinct /{}", escape(key)),
            };
            return Finding::found(format!("/{}", escape(key)), saw);
        }
    }
    Finding::missing("no field (id, *_id, *uuid, *key) is present and distinct in every record")
}

/// A key as a JSON pointer token (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
