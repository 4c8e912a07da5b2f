//! jobs/<name>.toml as written.

use serde::Deserialize;
use toml::Spanned;

use super::values::{JobAuthDef, LookbackDef, OrderedMap, ScalarDef};

/// One job file. Only `[request]` is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDef {
    pub description: Option<String>,
    pub auth: Option<Spanned<JobAuthDef>>,
    /// Standard 5-field cron, UTC.
    pub schedule: Option<Spanned<String>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub request: RequestDef,
    pub pagination: Option<PaginationDef>,
    pub records: Option<RecordsDef>,
    pub incremental: Option<IncrementalDef>,
    pub partitions: Option<PartitionsDef>,
    pub output: Option<OutputDef>,
    pub retry: Option<RetryDef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MethodDef {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDef {
    pub url: Spanned<String>,
    pub method: Option<Spanned<MethodDef>>,
    #[serde(default)]
    pub query: OrderedMap<Spanned<ScalarDef>>,
    #[serde(default)]
    pub headers: OrderedMap<Spanned<ScalarDef>>,
    pub body: Option<Spanned<serde_json::Value>>,
    /// Duration text; default 30s.
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaginationType {
    None,
    LinkHeader,
    NextUrl,
    Cursor,
    Offset,
    Page,
}

impl PaginationType {
    pub fn as_str(self) -> &'static str {
        match self {
            PaginationType::None => "none",
            PaginationType::LinkHeader => "link_header",
            PaginationType::NextUrl => "next_url",
            PaginationType::Cursor => "cursor",
            PaginationType::Offset => "offset",
            PaginationType::Page => "page",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamInDef {
    Query,
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorFromDef {
    Body,
    LastRecord,
}

/// `[pagination]`: flat with a `type` field for the same reason as
/// [`super::AuthDef`]; `plan` rejects keys of another type by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaginationDef {
    #[serde(rename = "type")]
    pub kind: Spanned<PaginationType>,
    pub cursor_path: Option<Spanned<String>>,
    pub cursor_param: Option<Spanned<String>>,
    pub cursor_in: Option<Spanned<ParamInDef>>,
    pub cursor_from: Option<Spanned<CursorFromDef>>,
    pub next_url_path: Option<Spanned<String>>,
    pub offset_param: Option<Spanned<String>>,
    pub limit_param: Option<Spanned<String>>,
    pub limit: Option<Spanned<u64>>,
    pub total_path: Option<Spanned<String>>,
    pub total_header: Option<Spanned<String>>,
    pub page_param: Option<Spanned<String>>,
    pub start: Option<Spanned<u64>>,
    pub size_param: Option<Spanned<String>>,
    pub size: Option<Spanned<u64>>,
    pub total_pages_path: Option<Spanned<String>>,
    pub has_more_path: Option<Spanned<String>>,
    pub max_pages: Option<Spanned<u64>>,
    pub allow_cross_origin: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsDef {
    /// JSON pointer; "" (the default) when the body is the array.
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub primary_key: Vec<Spanned<String>>,
    pub error_path: Option<Spanned<String>>,
    pub error_retry: Option<bool>,
    /// Bytes; default 64 MiB.
    pub max_page_bytes: Option<Spanned<u64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorTypeDef {
    Timestamp,
    Integer,
    String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMissingCursorDef {
    Error,
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalDef {
    pub cursor_field: Spanned<String>,
    pub cursor_type: Spanned<CursorTypeDef>,
    pub param: Spanned<String>,
    pub param_in: Option<Spanned<ParamInDef>>,
    pub initial: Option<Spanned<ScalarDef>>,
    pub lookback: Option<Spanned<LookbackDef>>,
    pub on_missing_cursor: Option<OnMissingCursorDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatesDef {
    pub from: Spanned<String>,
    pub to: Spanned<String>,
    pub step: Spanned<String>,
}

/// `[partitions]`: exactly one of `values`, `from_job` (+ `field`), `dates`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionsDef {
    pub values: Option<Spanned<Vec<ScalarDef>>>,
    pub from_job: Option<Spanned<String>>,
    pub field: Option<Spanned<String>>,
    pub dates: Option<Spanned<DatesDef>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeDef {
    Merge,
    Append,
    Replace,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDef {
    pub table: Option<Spanned<String>>,
    pub mode: Option<Spanned<ModeDef>>,
    #[serde(default)]
    pub columns: OrderedMap<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryDef {
    pub max_attempts: Option<Spanned<u32>>,
    pub initial_backoff: Option<Spanned<String>>,
    pub max_backoff: Option<Spanned<String>>,
    pub max_elapsed: Option<Spanned<String>>,
}
