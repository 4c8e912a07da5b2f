//! The job file `init` writes: every detected line with a `#` comment that
//! says what was seen, and a comment for what could not be detected.

use std::fmt::Write as _;

use url::Url;

use super::detect::{Finding, RecordsAt};
use crate::plan::PaginationKind;

/// Everything detected on the first page.
#[derive(Debug, Clone)]
pub struct Detection {
    pub records: Finding<RecordsAt>,
    pub pagination: Finding<PaginationKind>,
    pub has_more: Option<Finding<String>>,
    pub primary_key: Finding<String>,
}

impl Detection {
    /// What could not be detected, one sentence each (for stderr).
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.records.value.is_none() {
            out.push(format!("records path: {}", self.records.saw));
        }
        // "none" is a guess from the absence of any sign: say so too.
        if matches!(self.pagination.value, None | Some(PaginationKind::None)) {
            out.push(format!("pagination: {}", self.pagination.saw));
        }
        if self.primary_key.value.is_none() {
            out.push(format!("primary key: {}", self.primary_key.saw));
        }
        out
    }
}

/// A TOML string literal.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// One comment line; the text is what a server sent, so line breaks go.
fn comment(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// The job file text. `url` is the request URL as given; the parameters
/// pagination adds itself are taken out of it.
pub fn job_file(name: &str, url: &Url, auth: Option<&str>, found: &Detection) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# jobs/{name}.toml, written by `apisync init` from the first page of"
    );
    let _ = writeln!(out, "# {}", comment(url.as_str()));
    let _ = writeln!(
        out,
        "# Each comment says what was seen. Check the guesses against the API's documentation."
    );
    let _ = writeln!(
        out,
        "description = {}",
        quote(&format!("{name} (scaffolded by apisync init)"))
    );
    if let Some(auth) = auth {
        let _ = writeln!(out, "auth = {}", quote(auth));
    }
    let pagination = found
        .pagination
        .value
        .clone()
        .unwrap_or(PaginationKind::None);
    let _ = writeln!(out, "\n[request]");
    let _ = writeln!(out, "url = {}", quote(start_url(url, &pagination).as_str()));
    write_pagination(&mut out, url, &found.pagination, found.has_more.as_ref());
    write_records(&mut out, found);
    let _ = writeln!(out, "\n[output]");
    match found.primary_key.value {
        Some(_) => {
            let _ = writeln!(
                out,
                "mode = \"merge\"  # upsert on primary_key: a rerun updates rows"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "mode = \"append\"  # no primary key: every run appends (set primary_key and mode = \"merge\" to upsert)"
            );
        }
    }
    out
}

/// Did the URL ask for a page size in `param` (its first value a count)?
/// Only then is `limit` written; otherwise the plan's default applies.
fn asks_for_limit(url: &Url, param: &str) -> bool {
    url.query_pairs()
        .find(|(key, _)| key == param)
        .is_some_and(|(_, value)| value.parse::<u64>().is_ok())
}

/// `url` without the parameters pagination will add (they would repeat).
fn start_url(url: &Url, pagination: &PaginationKind) -> Url {
    let own = crate::fetch::query_params(pagination);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !own.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut clean = url.clone();
    if kept.is_empty() {
        clean.set_query(None);
    } else {
        clean.query_pairs_mut().clear().extend_pairs(kept);
    }
    clean
}

fn write_pagination(
    out: &mut String,
    url: &Url,
    found: &Finding<PaginationKind>,
    has_more: Option<&Finding<String>>,
) {
    let _ = writeln!(out, "\n[pagination]");
    let saw = comment(&found.saw);
    let Some(kind) = &found.value else {
        let _ = writeln!(out, "type = \"none\"  # not detected: {saw}");
        return;
    };
    let _ = writeln!(out, "type = \"{}\"  # saw: {saw}", kind.type_name());
    match kind {
        PaginationKind::None | PaginationKind::LinkHeader => {}
        PaginationKind::NextUrl { next_url_path } => {
            let _ = writeln!(out, "next_url_path = {}", quote(next_url_path));
        }
        PaginationKind::Cursor {
            cursor_path,
            cursor_param,
            ..
        } => {
            let _ = writeln!(out, "cursor_path = {}", quote(cursor_path));
            let _ = writeln!(
                out,
                "cursor_param = {}  # check: a guess from the field's name",
                quote(cursor_param)
            );
        }
        PaginationKind::Offset {
            offset_param,
            limit_param,
            limit,
            total_path,
            ..
        } => {
            let _ = writeln!(out, "offset_param = {}", quote(offset_param));
            let _ = writeln!(out, "limit_param = {}", quote(limit_param));
            if asks_for_limit(url, limit_param) {
                let _ = writeln!(out, "limit = {limit}");
            }
            if let Some(path) = total_path {
                let _ = writeln!(out, "total_path = {}", quote(path));
            }
        }
        PaginationKind::Page {
            page_param,
            size_param,
            size,
            total_pages_path,
            ..
        } => {
            let _ = writeln!(out, "page_param = {}", quote(page_param));
            if let (Some(param), Some(size)) = (size_param, size) {
                let _ = writeln!(out, "size_param = {}", quote(param));
                let _ = writeln!(out, "size = {size}");
            }
            if let Some(path) = total_pages_path {
                let _ = writeln!(out, "total_pages_path = {}", quote(path));
            }
        }
    }
    if let Some(Finding {
        value: Some(path),
        saw,
    }) = has_more
        && !matches!(kind, PaginationKind::None)
    {
        let _ = writeln!(
            out,
            "has_more_path = {}  # saw: {}",
            quote(path),
            comment(saw)
        );
    }
}

fn write_records(out: &mut String, found: &Detection) {
    let _ = writeln!(out, "\n[records]");
    match &found.records.value {
        Some(at) => {
            let _ = writeln!(
                out,
                "path = {}  # saw: {}",
                quote(&at.pointer),
                comment(&found.records.saw)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "# path: not detected: {} (set the JSON pointer to the array of records)",
                comment(&found.records.saw)
            );
            let _ = writeln!(out, "path = \"\"");
        }
    }
    match &found.primary_key.value {
        Some(key) => {
            let _ = writeln!(
                out,
                "primary_key = [{}]  # saw: {}",
                quote(key),
                comment(&found.primary_key.saw)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "# primary_key: not detected: {}",
                comment(&found.primary_key.saw)
            );
        }
    }
}
