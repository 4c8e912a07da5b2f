//! jobs/<name>.toml as written.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::values::{JobAuthDef, LookbackDef, OrderedMap, ScalarDef};

/// One job file. Only `[request]` is required.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobDef {
    pub description: Option<String>,
    #[schemars(with = "Option<JobAuthDef>")]
    pub auth: Option<Spanned<JobAuthDef>>,
    /// Standard 5-field cron, UTC.
    #[schemars(with = "Option<String>")]
    pub schedule: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum MethodDef {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestDef {
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    #[schemars(with = "Option<MethodDef>")]
    pub method: Option<Spanned<MethodDef>>,
    #[serde(default)]
    #[schemars(with = "OrderedMap<ScalarDef>")]
    pub query: OrderedMap<Spanned<ScalarDef>>,
    #[serde(default)]
    #[schemars(with = "OrderedMap<ScalarDef>")]
    pub headers: OrderedMap<Spanned<ScalarDef>>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub body: Option<Spanned<serde_json::Value>>,
    /// Duration text; default 30s.
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamInDef {
    Query,
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CursorFromDef {
    Body,
    LastRecord,
    Header,
}

/// `[pagination]`: flat with a `type` field for the same reason as
/// [`super::AuthDef`]; `plan` rejects keys of another type by name.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaginationDef {
    #[serde(rename = "type")]
    #[schemars(with = "PaginationType")]
    pub kind: Spanned<PaginationType>,
    #[schemars(with = "Option<String>")]
    pub cursor_path: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub cursor_param: Option<Spanned<String>>,
    #[schemars(with = "Option<ParamInDef>")]
    pub cursor_in: Option<Spanned<ParamInDef>>,
    #[schemars(with = "Option<CursorFromDef>")]
    pub cursor_from: Option<Spanned<CursorFromDef>>,
    /// The response header carrying the next cursor (`cursor_from = "header"`).
    #[schemars(with = "Option<String>")]
    pub cursor_header: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub next_url_path: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub offset_param: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub limit_param: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    pub limit: Option<Spanned<u64>>,
    #[schemars(with = "Option<String>")]
    pub total_path: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub total_header: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub page_param: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    pub start: Option<Spanned<u64>>,
    #[schemars(with = "Option<String>")]
    pub size_param: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    pub size: Option<Spanned<u64>>,
    #[schemars(with = "Option<String>")]
    pub total_pages_path: Option<Spanned<String>>,
    /// Where offset and page types send their parameters; "body" (POST
    /// only) puts them at JSON pointers into the body.
    #[schemars(with = "Option<ParamInDef>")]
    pub param_in: Option<Spanned<ParamInDef>>,
    /// JSON pointer into the body; with `stop_value`, the page whose value
    /// there equals it is the last.
    #[schemars(with = "Option<String>")]
    pub stop_path: Option<Spanned<String>>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub stop_value: Option<Spanned<serde_json::Value>>,
    #[schemars(with = "Option<String>")]
    pub has_more_path: Option<Spanned<String>>,
    #[schemars(with = "Option<u64>")]
    pub max_pages: Option<Spanned<u64>>,
    #[schemars(with = "Option<bool>")]
    pub allow_cross_origin: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordsDef {
    /// JSON pointer; "" (the default) when the body is the array.
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub primary_key: Vec<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub error_path: Option<Spanned<String>>,
    pub error_retry: Option<bool>,
    /// Bytes; default 64 MiB.
    #[schemars(with = "Option<u64>")]
    pub max_page_bytes: Option<Spanned<u64>>,
    /// The value at `path` is one object, one record (`GET /me`).
    pub single: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CursorTypeDef {
    Timestamp,
    Integer,
    String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnMissingCursorDef {
    Error,
    Skip,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrementalDef {
    #[schemars(with = "String")]
    pub cursor_field: Spanned<String>,
    #[schemars(with = "CursorTypeDef")]
    pub cursor_type: Spanned<CursorTypeDef>,
    /// Not needed (and refused) when the request holds `{mark}`.
    #[schemars(with = "Option<String>")]
    pub param: Option<Spanned<String>>,
    #[schemars(with = "Option<ParamInDef>")]
    pub param_in: Option<Spanned<ParamInDef>>,
    #[schemars(with = "Option<ScalarDef>")]
    pub initial: Option<Spanned<ScalarDef>>,
    #[schemars(with = "Option<LookbackDef>")]
    pub lookback: Option<Spanned<LookbackDef>>,
    pub on_missing_cursor: Option<OnMissingCursorDef>,
    /// The longest range one request asks for (`{window.start}` to
    /// `{window.end}`): a duration ("30d") for timestamps, a span for
    /// integers.
    #[schemars(with = "Option<LookbackDef>")]
    pub window: Option<Spanned<LookbackDef>>,
    /// Where the last window ends: "now" (the default), "now-5m", an RFC
    /// 3339 time, or an integer for integer cursors.
    #[schemars(with = "Option<LookbackDef>")]
    pub end: Option<Spanned<LookbackDef>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatesDef {
    #[schemars(with = "String")]
    pub from: Spanned<String>,
    #[schemars(with = "String")]
    pub to: Spanned<String>,
    #[schemars(with = "String")]
    pub step: Spanned<String>,
}

/// `[partitions]`: exactly one of `values`, `from_job` (+ `field` or
/// `fields`, and `changed_only`), `dates`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionsDef {
    #[schemars(with = "Option<Vec<ScalarDef>>")]
    pub values: Option<Spanned<Vec<ScalarDef>>>,
    #[schemars(with = "Option<String>")]
    pub from_job: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub field: Option<Spanned<String>>,
    /// Several values of each parent row, by name: `{partition.NAME}`.
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub fields: Option<Spanned<OrderedMap<Spanned<String>>>>,
    #[schemars(with = "Option<DatesDef>")]
    pub dates: Option<Spanned<DatesDef>>,
    /// With `from_job`: only the parent rows written (inserted or updated,
    /// changed or not) at or after the start of this job's last finished
    /// pass; every row on the first pass. Default false. Not with `values`,
    /// `dates` or `mode = "replace"` (the swapped-in table would hold only
    /// the changed parents' children).
    #[schemars(with = "Option<bool>")]
    pub changed_only: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeDef {
    Merge,
    Append,
    Replace,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputDef {
    #[schemars(with = "Option<String>")]
    pub table: Option<Spanned<String>>,
    #[schemars(with = "Option<ModeDef>")]
    pub mode: Option<Spanned<ModeDef>>,
    #[serde(default)]
    #[schemars(with = "OrderedMap<String>")]
    pub columns: OrderedMap<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDef {
    #[schemars(with = "Option<u32>")]
    pub max_attempts: Option<Spanned<u32>>,
    #[schemars(with = "Option<String>")]
    pub initial_backoff: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub max_backoff: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub max_elapsed: Option<Spanned<String>>,
}
