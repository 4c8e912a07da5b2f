//! A second, read-only connection for reads that can be large: partition
//! values of a `from_job` job, read in pages while the writer thread keeps
//! writing pages (WAL lets both proceed).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::sql::pointer_to_path;
use super::tables::table_exists;
use crate::store::backend::Reader;
use crate::store::error::StoreError;
use crate::store::sql::quote_ident;
use crate::store::types::StreamKey;

/// Read-only access to the database the [`super::Store`] writes.
pub(crate) struct SqliteReader {
    conn: Connection,
}

impl std::fmt::Debug for SqliteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReader")
            .field("path", &self.conn.path())
            .finish_non_exhaustive()
    }
}

impl SqliteReader {
    /// Open `path` read-only. The schema must exist already (a [`super::Store`]
    /// opened it first).
    pub fn open(path: &Path) -> Result<SqliteReader, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        conn.busy_timeout(super::open::BUSY_TIMEOUT)
            .map_err(|source| StoreError::Pragma {
                path: path.to_path_buf(),
                pragma: "busy_timeout",
                source: Box::new(source),
            })?;
        Ok(SqliteReader { conn })
    }

    /// Open `path` to look at it without changing anything on disk, for
    /// `run --dry-run`: no migration, and no `-wal`/`-shm` files left behind.
    /// A database a run finished with has no WAL: it is opened `immutable`,
    /// which creates no file. One a crash left a WAL beside is read through
    /// it (its files exist already), so its last commits are seen.
    pub fn open_to_peek(path: &Path) -> Result<SqliteReader, StoreError> {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        if Path::new(&wal).exists() {
            return SqliteReader::open(path);
        }
        let mut uri =
            url::Url::from_file_path(std::path::absolute(path).map_err(|e| StoreError::Open {
                path: path.to_path_buf(),
                source: Box::new(e),
            })?)
            .map_err(|()| StoreError::Open {
                path: path.to_path_buf(),
                source: "not a file path".into(),
            })?;
        uri.set_query(Some("mode=ro&immutable=1"));
        SqliteReader::open(Path::new(uri.as_str()))
    }

    fn value(
        &self,
        sql: &str,
        stream: &StreamKey,
        action: &'static str,
    ) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(sql, (&stream.job, &stream.partition), |r| r.get(0))
            .optional()
            .map_err(|source| StoreError::Job {
                job: stream.job.clone(),
                action,
                source: Box::new(source),
            })
    }
}

/// The text of the value at the JSON path bound as `?n` of `_data`, as
/// PostgreSQL's `#>>` gives it: a string as is, an integer in its own
/// digits (`json_extract` reads one beyond i64 as a float, whose text
/// would name another partition), anything else through `json_extract`.
fn value_text(n: usize) -> String {
    format!(
        "CASE json_type(\"_data\", ?{n}) WHEN 'integer' THEN (\"_data\" -> ?{n}) \
         ELSE CAST(json_extract(\"_data\", ?{n}) AS TEXT) END"
    )
}

impl Reader for SqliteReader {
    /// Whether apisync's state tables are here in this version's layout (a
    /// new database, or one an older apisync wrote, has none yet).
    fn has_state(&self) -> Result<bool, StoreError> {
        self.has_table("_apisync_checkpoints")
    }

    /// The saved position of `stream`, as [`crate::store::Pages::load_checkpoint`].
    fn checkpoint(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.value(
            "SELECT position FROM _apisync_checkpoints WHERE job = ?1 AND partition = ?2",
            stream,
            "load the checkpoint",
        )
    }

    /// The high-water mark of `stream`, as [`crate::store::Pages::load_mark`].
    fn mark(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.value(
            "SELECT value FROM _apisync_marks WHERE job = ?1 AND partition = ?2",
            stream,
            "load the mark",
        )
    }

    /// Whether `table` exists (a parent job that never ran has no table).
    fn has_table(&self, table: &str) -> Result<bool, StoreError> {
        table_exists(&self.conn, table).map_err(|source| StoreError::Table {
            table: table.to_string(),
            action: "look it up",
            source: Box::new(source),
        })
    }

    /// Up to `limit` distinct non-null values at `pointer` in `table`, as
    /// text, in text order, after `after` (keyset pagination: pass the last
    /// value of the previous page). Numbers read as their decimal text.
    fn distinct_values_page(
        &self,
        table: &str,
        pointer: &str,
        after: Option<&str>,
        since: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let path = pointer_to_path(pointer)?;
        let sql = format!(
            "SELECT DISTINCT v FROM (SELECT {} AS v FROM {}{})
             WHERE v IS NOT NULL AND (?2 IS NULL OR v > ?2) ORDER BY v LIMIT ?3",
            value_text(1),
            quote_ident(table),
            since_filter(since, 4, " WHERE ")
        );
        let err = |source| StoreError::Table {
            table: table.to_string(),
            action: "read partition values",
            source: Box::new(source),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(err)?;
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![&path, &after, &limit];
        params.extend(since.iter().map(|s| s as &dyn rusqlite::ToSql));
        let rows = stmt
            .query_map(params.as_slice(), |r| r.get::<_, String>(0))
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn distinct_combinations_page(
        &self,
        table: &str,
        pointers: &[String],
        after: Option<&str>,
        since: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let paths = pointers
            .iter()
            .map(|p| pointer_to_path(p))
            .collect::<Result<Vec<_>, _>>()?;
        // ?1 is `after`, ?2 the limit, ?3.. the paths, then `since`.
        // As text, as `distinct_values_page` reads one: 42 and "42" are one
        // partition, whose placeholders would ask for the same thing.
        // `|| ''` drops the JSON subtype an object or array keeps through
        // the CAST, which `json_array` would otherwise embed as JSON.
        let extract = |i: usize| format!("({} || '')", value_text(i + 3));
        let values: Vec<String> = (0..paths.len()).map(extract).collect();
        let present: Vec<String> = values.iter().map(|v| format!("{v} IS NOT NULL")).collect();
        let sql = format!(
            "SELECT DISTINCT v FROM (SELECT json_array({}) AS v FROM {} WHERE {}{})
             WHERE (?1 IS NULL OR v > ?1) ORDER BY v LIMIT ?2",
            values.join(", "),
            quote_ident(table),
            present.join(" AND "),
            since_filter(since, paths.len() + 3, " AND ")
        );
        let err = |source| StoreError::Table {
            table: table.to_string(),
            action: "read partition values",
            source: Box::new(source),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![&after, &limit];
        params.extend(paths.iter().map(|p| p as &dyn rusqlite::ToSql));
        params.extend(since.iter().map(|s| s as &dyn rusqlite::ToSql));
        let mut stmt = self.conn.prepare_cached(&sql).map_err(err)?;
        let rows = stmt
            .query_map(params.as_slice(), |r| r.get::<_, String>(0))
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn last_pass_start(&self, job: &str) -> Result<Option<String>, StoreError> {
        let err = |source| StoreError::Job {
            job: job.to_string(),
            action: "read the start of its last pass",
            source: Box::new(source),
        };
        // `run --dry-run` peeks at a database a run has not upgraded yet.
        if !table_exists(&self.conn, "_apisync_passes").map_err(err)? {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT last_started_at FROM _apisync_passes WHERE job = ?1",
                [job],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(err)
    }

    /// Which of `partitions` of `job` have finished in its current pass: the
    /// finished set is checked one batch at a time, never loaded whole.
    fn finished_among(&self, job: &str, partitions: &[&str]) -> Result<Vec<String>, StoreError> {
        let err = |source| StoreError::Job {
            job: job.to_string(),
            action: "read its finished partitions",
            source: Box::new(source),
        };
        let list = serde_json::to_string(partitions).unwrap_or_else(|_| "[]".into());
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT partition FROM _apisync_finished_streams
                 WHERE job = ?1 AND partition IN (SELECT value FROM json_each(?2))",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map((job, list), |r| r.get::<_, String>(0))
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }
}

/// `changed_only`'s filter on a parent's rows, `_synced_at >= ?n`, after
/// `join`; nothing without `since` (every row, and no parameter).
/// `_synced_at` and `since` are both RFC 3339 text in UTC with
/// milliseconds (`rules::now`), so text order is time order.
fn since_filter(since: Option<&str>, n: usize, join: &str) -> String {
    match since {
        Some(_) => format!("{join}\"_synced_at\" >= ?{n}"),
        None => String::new(),
    }
}
