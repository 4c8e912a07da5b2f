//! `[pagination]` -> `PaginationPlan`: defaults per type, required keys,
//! and keys that belong to another type named as such.

use std::ops::Range;

use toml::Spanned;

use super::checks;
use super::diagnostics::Sink;
use crate::definition::{CursorFromDef, PaginationDef, PaginationType, ParamInDef};
use crate::plan::{
    DEFAULT_LIMIT, DEFAULT_PAGE_START, HttpMethod, PaginationKind, PaginationPlan, ParamLocation,
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
        PaginationType::Cursor => &["cursor_path", "cursor_param", "cursor_in", "cursor_from"],
        PaginationType::Offset => &[
            "offset_param",
            "limit_param",
            "limit",
            "total_path",
            "total_header",
        ],
        PaginationType::Page => &[
            "page_param",
            "start",
            "size_param",
            "size",
            "total_pages_path",
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
            max_pages: 0,
            allow_cross_origin: false,
        });
    };
    let kind = *def.kind.get_ref();
    let mut ok = foreign_keys(def, kind, sink);
    let has_more_path = optional_pointer(&def.has_more_path, "has_more_path", sink, &mut ok);
    let plan_kind = match kind {
        PaginationType::None => Some(PaginationKind::None),
        PaginationType::LinkHeader => Some(PaginationKind::LinkHeader),
        PaginationType::NextUrl => required_pointer(def, &def.next_url_path, "next_url_path", sink)
            .map(|next_url_path| PaginationKind::NextUrl { next_url_path }),
        PaginationType::Cursor => cursor(def, method, sink),
        PaginationType::Offset => offset(def, sink, &mut ok),
        PaginationType::Page => page(def, sink, &mut ok),
    };
    let plan = PaginationPlan {
        kind: plan_kind?,
        has_more_path,
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

fn cursor(def: &PaginationDef, method: HttpMethod, sink: &mut Sink<'_>) -> Option<PaginationKind> {
    let cursor_path = required_pointer(def, &def.cursor_path, "cursor_path", sink);
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
        from_last_record: matches!(
            def.cursor_from.as_ref().map(|c| *c.get_ref()),
            Some(CursorFromDef::LastRecord)
        ),
    })
}

fn text_or(value: &Option<Spanned<String>>, default: &str) -> String {
    value
        .as_ref()
        .map_or_else(|| default.to_string(), |v| v.get_ref().clone())
}

fn offset(def: &PaginationDef, sink: &mut Sink<'_>, ok: &mut bool) -> Option<PaginationKind> {
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
        offset_param: text_or(&def.offset_param, "offset"),
        limit_param: text_or(&def.limit_param, "limit"),
        limit,
        total_path: optional_pointer(&def.total_path, "total_path", sink, ok),
        total_header: def.total_header.as_ref().map(|h| h.get_ref().clone()),
    })
}

fn page(def: &PaginationDef, sink: &mut Sink<'_>, ok: &mut bool) -> Option<PaginationKind> {
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
        page_param: text_or(&def.page_param, "page"),
        start: def
            .start
            .as_ref()
            .map_or(DEFAULT_PAGE_START, |s| *s.get_ref()),
        size_param: def.size_param.as_ref().map(|s| s.get_ref().clone()),
        size: def.size.as_ref().map(|s| *s.get_ref()),
        total_pages_path: optional_pointer(&def.total_pages_path, "total_pages_path", sink, ok),
    })
}
