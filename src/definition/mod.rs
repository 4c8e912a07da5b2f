//! The serde mirror of apisync.toml and jobs/<name>.toml, exactly as
//! written, and loading them with file:line:column errors.
//!
//! Every struct denies unknown keys; fields that `plan` validates later are
//! `toml::Spanned` so that its errors point at the line and column too.

mod job;
mod load;
mod project;
mod schema;
mod secret;
mod source;
pub(crate) mod suggest;
mod values;

pub use job::{
    CursorFromDef, CursorTypeDef, DatesDef, IncrementalDef, JobDef, MethodDef, ModeDef,
    OnMissingCursorDef, OutputDef, PaginationDef, PaginationType, ParamInDef, PartitionsDef,
    RecordsDef, RequestDef, RetryDef,
};
pub use load::{
    LoadError, LoadErrorKind, LoadedJob, is_identifier, load_job_file, load_jobs_dir,
    load_project_file, parse, read_source,
};
pub use project::{AuthDef, AuthType, ClientAuthDef, HostDef, ProjectDef};
pub use schema::{SchemaKind, schema_json};
pub use secret::SecretDef;
pub use source::SourceFile;
pub use values::{JobAuthDef, LookbackDef, OrderedMap, ScalarDef};
