//! What every job of one invocation shares: the writer, the HTTP client,
//! credentials, cancellation, limits, and the read-only connection that
//! partition listings use. Sharded or not, it is the same: a sharded run
//! keeps what it adds in its own `sharded::ShardEnv`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use super::writer::Writer;
use crate::auth::Credential;
use crate::fetch::HttpClient;

/// What every job of one invocation shares.
pub(crate) struct RunEnv {
    pub writer: Writer,
    pub http: HttpClient,
    /// Per auth name: the shared credential, or why it could not be built
    /// (a missing secret fails the jobs that use it, not the whole run).
    pub credentials: HashMap<String, Result<Arc<Credential>, String>>,
    /// `[secrets]`, resolved for each job that names one when it starts.
    pub secrets: std::collections::BTreeMap<String, crate::plan::SecretSource>,
    pub cancel: CancellationToken,
    pub job_concurrency: usize,
    /// Streams of one job in flight at once (requests are limited separately).
    pub stream_width: usize,
    /// Job name -> its table, for `partitions.from_job`.
    pub parent_tables: HashMap<String, String>,
    /// The database, for read-only connections beside the writer's.
    pub database: crate::plan::Database,
    /// The read-only connection partition listings share, opened by the
    /// first one: a sharded child polling its parent every second must not
    /// open a connection each time.
    pub reader: std::sync::Mutex<Option<Arc<std::sync::Mutex<crate::store::StoreReader>>>>,
    /// This process's job-lease holder id (`hostname:pid:random@start`).
    pub holder: String,
    /// Told about every stream (a live display on a terminal, else nothing).
    pub progress: Arc<dyn Progress>,
}
