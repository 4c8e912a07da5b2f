//! The validated, defaulted form of a project: what every later stage reads.
//!
//! Nothing here is optional "because the file may omit it": defaults are
//! applied by `plan::build`, so fetch, store and run never re-derive them.
//! Values keep the user's spelling (query keys, header names) exactly.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;

/// Everything one invocation needs: runtime settings, credentials, limits, jobs.
#[derive(Debug, Clone)]
pub struct ProjectPlan {
    /// The apisync.toml this came from, if there was one.
    pub config_file: Option<PathBuf>,
    pub settings: Settings,
    /// Named credentials from `[auth.NAME]`, plus one entry per job with an
    /// inline auth table, keyed `job:<job name>`.
    pub auths: BTreeMap<String, AuthPlan>,
    /// `[hosts."name"]` limits, keyed by host name as written (lowercased).
    pub hosts: BTreeMap<String, HostLimits>,
    /// `[secrets]`: what `{secret.NAME}` in a job's request stands for,
    /// resolved at run time like an auth's secrets.
    pub secrets: BTreeMap<String, SecretSource>,
    /// Every job, sorted by name.
    pub jobs: Vec<JobPlan>,
}

/// Runtime settings after layering: file, then `APISYNC_*`, then flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The SQLite file (relative paths already resolved against apisync.toml's
    /// folder) or the PostgreSQL URL (its password hidden from Display/Debug).
    pub database: super::database::Database,
    pub jobs_dir: PathBuf,
    /// Most HTTP requests in flight at once, all jobs together. Default 8.
    pub concurrency: usize,
    /// Most jobs running at once. Default 4.
    pub job_concurrency: usize,
}

/// Per-host limits shared by every job that calls the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostLimits {
    pub rate_limit: Option<RateLimit>,
    pub concurrency: Option<usize>,
}

/// `N/s`, `N/min` or `N/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per: Duration,
}

/// Where a secret comes from. Resolved by `auth` at run time, so `validate`
/// never needs the secret itself.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    Env(String),
    /// Absolute path (resolved against the naming file's folder).
    File(PathBuf),
    /// argv of a command whose trimmed stdout is the secret; never a shell.
    Command(Vec<String>),
    /// Written into the file (warned about at load time).
    Plain(Secret),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// client_secret_basic (RFC 6749 2.3.1), the default.
    Basic,
    /// client_secret_post.
    Post,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApiKeyPlacement {
    Header(String),
    /// Discouraged: the key ends up in server logs. Redacted in every URL we print or store.
    Query(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OAuthPlan {
    pub token_url: url::Url,
    pub client_id: SecretSource,
    /// Optional for public clients of the refresh grant.
    pub client_secret: Option<SecretSource>,
    pub scopes: Vec<String>,
    pub client_auth: ClientAuthMethod,
    /// Refresh this long before expiry (never earlier than half-life). Default 60s.
    pub refresh_before: Duration,
    pub audience: Option<String>,
    /// Lifetime assumed when the server sends no `expires_in`. Default 1h.
    pub default_lifetime: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AuthPlan {
    Bearer {
        token: SecretSource,
    },
    ApiKey {
        placement: ApiKeyPlacement,
        key: SecretSource,
    },
    Basic {
        username: SecretSource,
        password: SecretSource,
    },
    ClientCredentials(OAuthPlan),
    RefreshToken {
        oauth: OAuthPlan,
        refresh_token: SecretSource,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

/// Where a cursor or incremental mark is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamLocation {
    /// A query parameter named by the param.
    Query,
    /// A JSON pointer into the POST body.
    Body,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestPlan {
    /// May contain placeholders (`{partition}`, `{env.NAME}`, `{mark}`,
    /// ...; see `placeholder.rs`); validated by substituting sample values
    /// and parsing.
    pub url: String,
    pub method: HttpMethod,
    /// In the order written, keys exactly as written.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// POST only.
    pub body: Option<serde_json::Value>,
    /// Per request, including reading the body. Default 30s.
    pub timeout: Duration,
    /// The values of the `{env.NAME}` placeholders, read when the job was
    /// planned (after `--env-file`), so every request of a run agrees.
    pub env: Vec<(String, String)>,
    /// Each `{env.NAME}` whose variable was not set, as a located problem:
    /// `validate` reports them and a job that has one fails when it is run;
    /// commands that only read the database do not need the run's
    /// environment.
    pub missing_env: Vec<super::Diagnostic>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PaginationKind {
    None,
    /// rel="next" of the Link header (RFC 8288).
    LinkHeader,
    NextUrl {
        next_url_path: String,
    },
    Cursor {
        /// Pointer into the body, or into the last record when `from_last_record`.
        cursor_path: String,
        cursor_param: String,
        cursor_in: ParamLocation,
        from_last_record: bool,
        /// The response header the next cursor is read from
        /// (`cursor_from = "header"`); `cursor_path` is then unused ("").
        cursor_header: Option<String>,
    },
    Offset {
        offset_param: String,
        limit_param: String,
        limit: u64,
        total_path: Option<String>,
        total_header: Option<String>,
        /// Query parameters, or JSON pointers into the POST body.
        param_in: ParamLocation,
    },
    Page {
        page_param: String,
        start: u64,
        size_param: Option<String>,
        size: Option<u64>,
        total_pages_path: Option<String>,
        /// Query parameters, or JSON pointers into the POST body.
        param_in: ParamLocation,
    },
}

/// `limit` of offset pagination when the job does not set it.
pub const DEFAULT_LIMIT: u64 = 100;
/// The first page number of page pagination when the job does not set `start`.
pub const DEFAULT_PAGE_START: u64 = 1;

impl PaginationKind {
    /// The type as a job file writes it.
    pub fn written_type(&self) -> crate::definition::PaginationType {
        use crate::definition::PaginationType as Written;
        match self {
            PaginationKind::None => Written::None,
            PaginationKind::LinkHeader => Written::LinkHeader,
            PaginationKind::NextUrl { .. } => Written::NextUrl,
            PaginationKind::Cursor { .. } => Written::Cursor,
            PaginationKind::Offset { .. } => Written::Offset,
            PaginationKind::Page { .. } => Written::Page,
        }
    }

    /// The type's name in job files (`type = "offset"`).
    pub fn type_name(&self) -> &'static str {
        self.written_type().as_str()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PaginationPlan {
    pub kind: PaginationKind,
    pub has_more_path: Option<String>,
    /// The page whose body has this value at this pointer is the last.
    pub stop: Option<StopWhen>,
    /// 0 = no limit.
    pub max_pages: u64,
    pub allow_cross_origin: bool,
}

/// `stop_path` + `stop_value`: every type's stop on a value in the body.
#[derive(Debug, Clone, PartialEq)]
pub struct StopWhen {
    /// JSON pointer into the body.
    pub path: String,
    /// Compared as JSON (`true`, `"done"`, `0`).
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordsPlan {
    /// JSON pointer to the array; "" when the body is the array.
    pub path: String,
    /// The key's parts read from each record: JSON pointers, in order.
    pub primary_key: Vec<String>,
    /// The key's parts that are the stream's partition values
    /// (`primary_key = ["{partition.id}", "/id"]`): (position in the whole
    /// key, placeholder name). A record's `_pk` is its pointer parts with
    /// these put in at their places, each as a JSON string.
    pub partition_key: Vec<(usize, String)>,
    pub error_path: Option<String>,
    pub error_retry: bool,
    /// Largest body accepted, enforced while reading. Default 64 MiB.
    pub max_page_bytes: u64,
    /// `single = true`: the object at `path` is one record.
    pub single: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorType {
    Timestamp,
    Integer,
    String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissingCursor {
    Error,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookback {
    Duration(Duration),
    Integer(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct IncrementalPlan {
    pub cursor_field: String,
    pub cursor_type: CursorType,
    /// The parameter the mark is sent as (v1); None when the request
    /// places it itself with `{mark}`.
    pub param: Option<String>,
    pub param_in: ParamLocation,
    pub initial: Option<String>,
    pub lookback: Option<Lookback>,
    pub on_missing_cursor: OnMissingCursor,
    /// Present when the request holds `{window.start}` or `{window.end}`:
    /// the stream is fetched window by window, and its mark moves to each
    /// window's end as the window completes.
    pub windows: Option<Windows>,
}

/// How `[mark, end)` is cut into windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    /// The longest window; None: one window from the mark to the end.
    pub span: Option<Lookback>,
    pub end: WindowEnd,
}

/// Where a windowed stream's last window ends.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowEnd {
    /// The run's start minus this much (`end = "now"`, `"now-5m"`).
    BeforeNow(Duration),
    /// A fixed point: an RFC 3339 time or an integer, as text.
    At(String),
    /// Integer cursors without `end`: windows follow each other until one
    /// comes back empty.
    Open,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PartitionsPlan {
    Values(Vec<String>),
    FromJob {
        job: String,
        field: String,
        /// `changed_only`: only the parent rows written since this job's
        /// last finished pass started.
        changed_only: bool,
    },
    /// `from_job` with `fields`: one partition per distinct combination of
    /// the named values of the parent's rows (`{partition.NAME}`).
    FromJobFields {
        job: String,
        /// (name, pointer), in the order written.
        fields: Vec<(String, String)>,
        changed_only: bool,
    },
    Dates {
        from: String,
        /// A date, or "now".
        to: String,
        step: Duration,
    },
}

impl PartitionsPlan {
    /// The parent job of a `changed_only` job, whose rows written since
    /// the job's last finished pass make its partitions; None otherwise.
    pub fn changed_only_parent(&self) -> Option<&str> {
        match self {
            PartitionsPlan::FromJob {
                job,
                changed_only: true,
                ..
            }
            | PartitionsPlan::FromJobFields {
                job,
                changed_only: true,
                ..
            } => Some(job),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    Merge,
    Append,
    Replace,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnPlan {
    /// Checked against `[A-Za-z_][A-Za-z0-9_]*` and reserved `_` names.
    pub name: String,
    /// JSON pointer into the record, or a partition placeholder
    /// (`"{partition.id}"`): the stream's value, the same for each record.
    pub pointer: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputPlan {
    /// Checked against `[A-Za-z_][A-Za-z0-9_]*`; defaults to the job name.
    pub table: String,
    pub mode: WriteMode,
    pub columns: Vec<ColumnPlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPlan {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    /// Also the cap on a server's Retry-After.
    pub max_backoff: Duration,
    pub max_elapsed: Duration,
}

impl Default for RetryPlan {
    fn default() -> Self {
        RetryPlan {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    /// The file stem of jobs/<name>.toml.
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    /// Key into `ProjectPlan::auths`; None = no auth.
    pub auth: Option<String>,
    pub schedule: Option<String>,
    pub depends_on: Vec<String>,
    pub tags: Vec<String>,
    pub request: RequestPlan,
    pub pagination: PaginationPlan,
    pub records: RecordsPlan,
    pub incremental: Option<IncrementalPlan>,
    pub partitions: Option<PartitionsPlan>,
    pub output: OutputPlan,
    pub retry: RetryPlan,
}

/// One stream of a job: the job itself when it has no partitions, or one
/// partition value / date slice. `key` names its checkpoint ("" for none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub key: String,
    /// Substitutions for `{partition}`, `{partition.start}`, `{partition.end}`.
    pub vars: Vec<(String, String)>,
}

impl Partition {
    /// The single stream of an unpartitioned job.
    pub fn whole() -> Self {
        Partition {
            key: String::new(),
            vars: Vec::new(),
        }
    }

    /// What the `_partition` column of its rows holds: its values as a JSON
    /// object of strings, by placeholder name without `partition.`
    /// (`{"partition":"eu"}`, `{"brand":"7","id":"12"}`,
    /// `{"end":"2024-01-02","start":"2024-01-01"}`), names sorted, so that a
    /// `fields` partition's object is the same text as its key. Made from
    /// `vars` once per stream, not stored beside them, so every way of
    /// building a partition gets it.
    pub fn object(&self) -> String {
        let by_name: BTreeMap<&str, &str> = self
            .vars
            .iter()
            .map(|(name, value)| {
                let name = name.strip_prefix("partition.").unwrap_or(name);
                (name, value.as_str())
            })
            .collect();
        // A map of strings always serializes; the fallback is never used.
        serde_json::to_string(&by_name).unwrap_or_else(|_| "{}".to_string())
    }

    /// The value of `{name}` (`partition`, `partition.start`, ...).
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(var, _)| var == name)
            .map(|(_, value)| value.as_str())
    }
}
