//! `[pagination]` -> `PaginationPlan`: defaults per type, required keys,
//! and keys that belong to another type named as such.

use std::ops::Range;

use toml::Spanned;

use super::checks;
use super::diagnostics::Sink;
use crate::definition::{CursorFromDef, PaginationDef, PaginationType, ParamInDef};
use crate::plan::{
    DEFAULT_LIMIT, DEFAULT_PAGE_START, HttpMethod, PaginationKind, PaginationPlan, ParamLocation,
    StopWhen,
};

const TYPES: &[PaginationType] = &[
    PaginationType::None,
    PaginationType::LinkHeader,
    PaginationType::NextUrl,
    PaginationType::Cursor,
    PaginationType::Offset,
    PaginationType::Page,
];

/// The keys of each type besides `type` and the common ones.
fn keys_of(kind: PaginationType) -> &'static [&'static str] {
    match kind {
        PaginationType::None | PaginationType::LinkHeader => &[],
        PaginationType::NextUrl => &["next_url_path"],
        PaginationType::Cursor => &[
            "cursor_path",
            "cursor_param",
            "cursor_in",
            "cursor_from",
            "cursor_header",
        ],
        PaginationType::Offset => &[
            "offset_param",
            "limit_param",
            "limit",
            "total_path",
            "total_header",
            "param_in",
        ],
        PaginationType::Page => &[
            "page_param",
            "start",
            "size_param",
            "size",
            "total_pages_path",
            "param_in",
        ],
    }
}

fn present(def: &PaginationDef) -> Vec<(&'static str, Range<usize>)> {
    fn span<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
        value.as_ref().map(Spanned::span)
    }
    [
        ("cursor_path", span(&def.cursor_path)),
        ("cursor_param", span(&def.cursor_param)),
        ("cursor_in", span(&def.cursor_in)),
        ("cursor_from", span(&def.cursor_from)),
        ("cursor_header", span(&def.cursor_header)),
        ("next_url_path", span(&def.next_url_path)),
        ("offset_param", span(&def.offset_param)),
        ("limit_param", span(&def.limit_param)),
        ("limit", span(&def.limit)),
        ("total_path", span(&def.total_path)),
        ("total_header", span(&def.total_header)),
        ("page_param", span(&def.page_param)),
        ("start", span(&def.start)),
        ("size_param", span(&def.size_param)),
        ("size", span(&def.size)),
        ("total_pages_path", span(&def.total_pages_path)),
        ("param_in", span(&def.param_in)),
    ]
    .into_iter()
    .filter_map(|(key, span)| span.map(|s| (key, s)))
    .collect()
}

pub(crate) fn plan_pagination(
    def: Option<&PaginationDef>,
    method: HttpMethod,
    sink: &mut Sink<'_>,
) -> Option<PaginationPlan> {
    let Some(def) = def else {
        return Some(PaginationPlan {
            kind: PaginationKind::None,
            has_more_path: None,
            stop: None,
            max_pages: 0,
            allow_cross_origin: false,
        });
    };
    let kind = *def.kind.get_ref();
    let mut ok = foreign_keys(def, kind, sink);
    let has_more_path = optional_pointer(&def.has_more_path, "has_more_path", sink, &mut ok);
    let stop = stop_when(def, sink, &mut ok);
    let plan_kind = match kind {
        PaginationType::None => Some(PaginationKind::None),
        PaginationType::LinkHeader => Some(PaginationKind::LinkHeader),
        PaginationType::NextUrl => required_pointer(def, &def.next_url_path, "next_url_path", sink)
            .map(|next_url_path| PaginationKind::NextUrl { next_url_path }),
        PaginationType::Cursor => cursor(def, method, sink),
        PaginationType::Offset => offset(def, method, sink, &mut ok),
        PaginationType::Page => page(def, method, sink, &mut ok),
    };
    let plan = PaginationPlan {
        kind: plan_kind?,
        has_more_path,
        stop,
        max_pages: def.max_pages.as_ref().map_or(0, |m| *m.get_ref()),
        allow_cross_origin: def
            .allow_cross_origin
            .as_ref()
            .is_some_and(|a| *a.get_ref()),
    };
    ok.then_some(plan)
}

/// Reports every key of another type; false if there was one.
fn foreign_keys(def: &PaginationDef, kind: PaginationType, sink: &mut Sink<'_>) -> bool {
    let mut ok = true;
    for (key, span) in present(def) {
        if keys_of(kind).contains(&key) {
            continue;
        }
        ok = false;
        let owner = TYPES
            .iter()
            .find(|t| keys_of(**t).contains(&key))
            .map_or("another type", |t| t.as_str());
        sink.at_span(
            span,
            &format!("pagination.{key}"),
            format!("`{key}` is a key of pagination type \"{owner}\", but this pagination is type = \"{}\"", kind.as_str()),
            Some(format!("remove `{key}` or set type = \"{owner}\"")),
        );
    }
    ok
}

fn required_pointer(
    def: &PaginationDef,
    value: &Option<Spanned<String>>,
    key: &str,
    sink: &mut Sink<'_>,
) -> Option<String> {
    let Some(value) = value else {
        sink.at(
            &def.kind,
            &format!("pagination.{key}"),
            format!(
                "pagination type \"{}\" needs `{key}`",
                def.kind.get_ref().as_str()
            ),
            None,
        );
        return None;
    };
    checks::pointer(key, value.get_ref(), false)
        .map_err(|(m, h)| sink.at(value, &format!("pagination.{key}"), m, h))
        .ok()
        .map(|()| value.get_ref().clone())
}

fn optional_pointer(
    value: &Option<Spanned<String>>,
    key: &str,
    sink: &mut Sink<'_>,
    ok: &mut bool,
) -> Option<String> {
    let value = value.as_ref()?;
    if let Err((m, h)) = checks::pointer(key, value.get_ref(), false) {
        sink.at(value, &format!("pagination.{key}"), m, h);
        *ok = false;
    }
    Some(value.get_ref().clone())
}

/// `stop_path` + `stop_value`: both or neither.
fn stop_when(def: &PaginationDef, sink: &mut Sink<'_>, ok: &mut bool) -> Option<StopWhen> {
    match (&def.stop_path, &def.stop_value) {
        (None, None) => None,
        (Some(path), None) => {
            sink.at(
                path,
                "pagination.stop_path",
                "`stop_path` is given without `stop_value`",
                Some("add the value that ends pagination, such as stop_value = true".into()),
            );
            *ok = false;
            None
        }
        (None, Some(value)) => {
            sink.at(
                value,
                "pagination.stop_value",
                "`stop_value` is given without `stop_path`",
                Some(
                    "add the JSON pointer to compare, such as stop_path = \"/end_of_stream\""
                        .into(),
                ),
            );
            *ok = false;
            None
        }
        (Some(_), Some(value)) if is_toml_datetime(value.get_ref()) => {
            sink.at(
                value,
                "pagination.stop_value",
                "`stop_value` is a TOML date or time, which a JSON body never holds",
                Some("quote it as the string the API sends, such as stop_value = \"2024-01-01T00:00:00Z\"".into()),
            );
            *ok = false;
            None
        }
        (Some(_), Some(value)) => Some(StopWhen {
            path: optional_pointer(&def.stop_path, "stop_path", sink, ok)?,
            value: value.get_ref().clone(),
        }),
    }
}

/// How the toml crate hands a date or time to a `serde_json::Value`.
fn is_toml_datetime(value: &serde_json::Value) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.contains_key("$__toml_private_datetime"))
}

/// Where offset and page types send their parameters: "body" needs POST
/// (None, reported, otherwise).
fn param_location(
    def: &PaginationDef,
    method: HttpMethod,
    sink: &mut Sink<'_>,
    ok: &mut bool,
) -> ParamLocation {
    let Some(at) = def.param_in.as_ref() else {
        return ParamLocation::Query;
    };
    match (*at.get_ref(), method) {
        (ParamInDef::Query, _) => ParamLocation::Query,
        (ParamInDef::Body, HttpMethod::Post) => ParamLocation::Body,
        (ParamInDef::Body, HttpMethod::Get) => {
            sink.at(
                at,
                "pagination.param_in",
                "param_in = \"body\" needs a request body, but the method is GET",
                Some("set method = \"POST\" in [request]".into()),
            );
            *ok = false;
            ParamLocation::Query
        }
    }
}

/// A parameter name: a JSON pointer when it goes into the body.
fn param_name(
    value: &Option<Spanned<String>>,
    key: &str,
    default: &str,
    param_in: ParamLocation,
    sink: &mut Sink<'_>,
    ok: &mut bool,
) -> String {
    let Some(value) = value else {
        return match param_in {
            ParamLocation::Query => default.to_string(),
            ParamLocation::Body => format!("/{default}"),
        };
    };
    let checked = match param_in {
        ParamLocation::Query => Ok(()),
        ParamLocation::Body => checks::pointer(key, value.get_ref(), false),
    };
    if let Err((m, h)) = checked {
        sink.at(
            value,
            &format!("pagination.{key}"),
            format!("{m} (param_in = \"body\")"),
            h,
        );
        *ok = false;
    }
    value.get_ref().clone()
}

fn cursor(def: &PaginationDef, method: HttpMethod, sink: &mut Sink<'_>) -> Option<PaginationKind> {
    let from = def.cursor_from.as_ref().map(|c| *c.get_ref());
    let (cursor_path, cursor_header) = match (from, &def.cursor_header) {
        (Some(CursorFromDef::Header), header) => (
            header_source(def, header.as_ref(), sink),
            header.as_ref().map(|h| h.get_ref().clone()),
        ),
        (_, Some(header)) => {
            sink.at(
                header,
                "pagination.cursor_header",
                "`cursor_header` is given but the cursor is not read from a header",
                Some("add cursor_from = \"header\" or remove cursor_header".into()),
            );
            (None, None)
        }
        (_, None) => (
            required_pointer(def, &def.cursor_path, "cursor_path", sink),
            None,
        ),
    };
    let cursor_in = match def.cursor_in.as_ref().map(|c| *c.get_ref()) {
        Some(ParamInDef::Body) => ParamLocation::Body,
        _ => ParamLocation::Query,
    };
    let cursor_param = match (&def.cursor_param, cursor_in) {
        (None, _) => {
            sink.at(&def.kind, "pagination.cursor_param", "pagination type \"cursor\" needs `cursor_param`", Some("name the query parameter that carries the cursor, such as cursor_param = \"cursor\"".into()));
            None
        }
        (Some(param), ParamLocation::Body) => {
            checks::pointer("cursor_param", param.get_ref(), false)
                .map_err(|(m, h)| {
                    sink.at(
                        param,
                        "pagination.cursor_param",
                        format!("{m} (cursor_in = \"body\")"),
                        h,
                    )
                })
                .ok()
                .map(|()| param.get_ref().clone())
        }
        (Some(param), ParamLocation::Query) => Some(param.get_ref().clone()),
    };
    if let (Some(at), ParamLocation::Body, HttpMethod::Get) = (&def.cursor_in, cursor_in, method) {
        sink.at(
            at,
            "pagination.cursor_in",
            "cursor_in = \"body\" needs a request body, but the method is GET",
            Some("set method = \"POST\" in [request]".into()),
        );
        return None;
    }
    Some(PaginationKind::Cursor {
        cursor_path: cursor_path?,
        cursor_param: cursor_param?,
        cursor_in,
        from_last_record: matches!(from, Some(CursorFromDef::LastRecord)),
        cursor_header,
    })
}

/// `cursor_from = "header"`: `cursor_header` is required and `cursor_path`
/// not allowed; Some("") (no body pointer) when both hold.
fn header_source(
    def: &PaginationDef,
    header: Option<&Spanned<String>>,
    sink: &mut Sink<'_>,
) -> Option<String> {
    let mut ok = true;
    if header.is_none() {
        sink.at(
            def.cursor_from.as_ref()?,
            "pagination.cursor_header",
            "cursor_from = \"header\" needs `cursor_header`",
            Some("name the response header that carries the next cursor, such as cursor_header = \"X-Next-Cursor\"".into()),
        );
        ok = false;
    }
    if let Some(header) = header
        && let Err((m, h)) = cursor_header_name(header.get_ref())
    {
        sink.at(header, "pagination.cursor_header", m, h);
        ok = false;
    }
    if let Some(path) = &def.cursor_path {
        sink.at(
            path,
            "pagination.cursor_path",
            "`cursor_path` is given but cursor_from = \"header\" reads the cursor from a header",
            Some("remove cursor_path, or remove cursor_from and cursor_header".into()),
        );
        ok = false;
    }
    ok.then(String::new)
}

/// Headers that carry credentials or cookies: a cursor read from one would
/// be saved in the checkpoint table and sent back in a URL.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
    "cookie",
    "set-cookie",
];

/// `cursor_header` must be a header name a response can carry (a name
/// with a space or a colon would never be found, and the stream would end
/// after its first page as if it were complete), and not one that carries
/// credentials.
fn cursor_header_name(name: &str) -> Result<(), checks::Problem> {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err((
            format!("`cursor_header` \"{name}\" is not a valid HTTP header name"),
            Some("write the header's name alone, such as cursor_header = \"X-Next-Cursor\" (no spaces, no colon)".into()),
        ));
    }
    if CREDENTIAL_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err((
            format!("`cursor_header` \"{name}\" carries credentials or cookies, not a cursor"),
            Some("name the header the API documents for the next page's cursor".into()),
        ));
    }
    Ok(())
}

fn offset(
    def: &PaginationDef,
    method: HttpMethod,
    sink: &mut Sink<'_>,
    ok: &mut bool,
) -> Option<PaginationKind> {
    let param_in = param_location(def, method, sink, ok);
    let limit = def.limit.as_ref().map_or(DEFAULT_LIMIT, |l| *l.get_ref());
    if let Some(at) = def.limit.as_ref().filter(|l| *l.get_ref() == 0) {
        sink.at(
            at,
            "pagination.limit",
            "`limit` must be more than zero",
            None,
        );
        *ok = false;
    }
    Some(PaginationKind::Offset {
        offset_param: param_name(
            &def.offset_param,
            "offset_param",
            "offset",
            param_in,
            sink,
            ok,
        ),
        limit_param: param_name(&def.limit_param, "limit_param", "limit", param_in, sink, ok),
        limit,
        total_path: optional_pointer(&def.total_path, "total_path", sink, ok),
        total_header: def.total_header.as_ref().map(|h| h.get_ref().clone()),
        param_in,
    })
}

fn page(
    def: &PaginationDef,
    method: HttpMethod,
    sink: &mut Sink<'_>,
    ok: &mut bool,
) -> Option<PaginationKind> {
    let param_in = param_location(def, method, sink, ok);
    if let (Some(at), None) = (&def.size, &def.size_param) {
        sink.at(
            at,
            "pagination.size",
            "`size` is given without `size_param`",
            Some("add size_param = \"per_page\" (the query parameter that carries it)".into()),
        );
        *ok = false;
    }
    Some(PaginationKind::Page {
        page_param: param_name(&def.page_param, "page_param", "page", param_in, sink, ok),
        start: def
            .start
            .as_ref()
            .map_or(DEFAULT_PAGE_START, |s| *s.get_ref()),
        size_param: def
            .size_param
            .as_ref()
            .map(|_| param_name(&def.size_param, "size_param", "size", param_in, sink, ok)),
        size: def.size.as_ref().map(|s| *s.get_ref()),
        total_pages_path: optional_pointer(&def.total_pages_path, "total_pages_path", sink, ok),
        param_in,
    })
}

/// Whether the pagination sends its parameters in the JSON body; an
/// incremental `param` then goes there too unless its `param_in` says.
pub(crate) fn params_in_body(kind: &PaginationKind) -> bool {
    !body_params(kind).is_empty()
}

/// The body pointers the pagination writes, with the key each comes from.
fn body_params(kind: &PaginationKind) -> Vec<(&'static str, &str)> {
    match kind {
        PaginationKind::Cursor {
            cursor_param,
            cursor_in: ParamLocation::Body,
            ..
        } => vec![("cursor_param", cursor_param)],
        PaginationKind::Offset {
            offset_param,
            limit_param,
            param_in: ParamLocation::Body,
            ..
        } => vec![("offset_param", offset_param), ("limit_param", limit_param)],
        PaginationKind::Page {
            page_param,
            size_param,
            param_in: ParamLocation::Body,
            ..
        } => std::iter::once(("page_param", page_param.as_str()))
            .chain(size_param.as_deref().map(|s| ("size_param", s)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Two body pointers collide when they are the same or one lies inside
/// the other: whichever is written second replaces the first (an offset
/// at `/filter` would wipe out the mark at `/filter/since`).
fn collide(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    a == b || inside(a, b) || inside(b, a)
}

/// Reports every pair of body pointers that collide among the
/// pagination's parameters and the incremental `param` (`incremental`,
/// when it goes into the body); false if there was one.
pub(crate) fn check_body_params(
    def: &PaginationDef,
    kind: &PaginationKind,
    incremental: Option<&Spanned<String>>,
    sink: &mut Sink<'_>,
) -> bool {
    let present = present(def);
    let span_of = |key: &str| {
        present
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(def.kind.span(), |(_, span)| span.clone())
    };
    let mut params: Vec<(String, &str, Range<usize>)> = body_params(kind)
        .into_iter()
        .map(|(key, pointer)| (format!("pagination.{key}"), pointer, span_of(key)))
        .collect();
    if let Some(param) = incremental {
        params.push((
            "incremental.param".to_string(),
            param.get_ref().as_str(),
            param.span(),
        ));
    }
    let mut ok = true;
    for (i, (key, pointer, span)) in params.iter().enumerate() {
        if let Some((other, other_pointer, _)) =
            params[..i].iter().find(|(_, p, _)| collide(p, pointer))
        {
            sink.at_span(
                span.clone(),
                key,
                format!(
                    "`{key}` \"{pointer}\" and `{other}` \"{other_pointer}\" write the same place in the request body: one would replace the other"
                ),
                Some("give each parameter its own JSON pointer, neither inside the other".into()),
            );
            ok = false;
        }
    }
    ok
}
