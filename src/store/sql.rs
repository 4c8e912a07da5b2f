//! SQL text both backends build alike: identifier quoting, staging table
//! names, and where apisync's own tables live on each.

/// Prefix of the table a replace job fills before the swap. Plan refuses
/// user tables starting with `_apisync_` (any case), so a staging table never
/// meets a user's table; no table of apisync's own starts with it.
pub(crate) const STAGING_PREFIX: &str = "_apisync_staging_";

/// apisync's own tables on SQLite: `_apisync_runs`, `_apisync_marks`, ...
/// A job named `runs` or `marks` gets its own table beside them, never
/// theirs.
pub(crate) const SQLITE_STATE_PREFIX: &str = "_apisync_";

/// apisync's own tables on PostgreSQL live in this schema (`_apisync.runs`,
/// ...); user tables stay in the connection's current schema. Not
/// `apisync`: `"$user"` in the default search_path would make a schema of
/// that name the current one for a role called apisync, and user tables
/// would land beside apisync's again.
pub(crate) const PG_STATE_SCHEMA: &str = "_apisync";

/// [`PG_STATE_SCHEMA`] as a prefix of a qualified name.
pub(crate) const PG_STATE_TABLES: &str = "_apisync.";

/// apisync's own tables, by their name in [`PG_STATE_SCHEMA`]; on SQLite
/// each has [`SQLITE_STATE_PREFIX`] before it.
#[cfg(test)]
pub(crate) const STATE_TABLES: &[&str] = &[
    "schema_version",
    "runs",
    "checkpoints",
    "marks",
    "finished_streams",
    "job_leases",
    "invocations",
    "invocation_holders",
    "invocation_streams",
    "invocation_jobs",
    "run_shards",
    "refresh_tokens",
    "passes",
];

/// Test SQL written with SQLite's names (`_apisync_runs`) for PostgreSQL
/// (`_apisync.runs`), so one test body serves both backends.
#[cfg(test)]
pub(crate) fn state_names_for_postgres(sql: &str) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(SQLITE_STATE_PREFIX) {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let tail = &from[SQLITE_STATE_PREFIX.len()..];
        let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        let starts_word = !before.ends_with(is_ident);
        if starts_word && STATE_TABLES.contains(&&tail[..end]) {
            out.push_str(PG_STATE_TABLES);
        } else {
            out.push_str(SQLITE_STATE_PREFIX);
        }
        out.push_str(&tail[..end]);
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `name` as an SQL identifier. Plan already rejects odd names; quoting
/// anyway means a bug there can never become SQL injection here.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(crate) fn staging_name(table: &str) -> String {
    format!("{STAGING_PREFIX}{table}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_ident_doubles_quotes() {
        assert_eq!(quote_ident("orders"), "\"orders\"");
        assert_eq!(
            quote_ident("x\"; DROP TABLE runs; --"),
            "\"x\"\"; DROP TABLE runs; --\""
        );
    }
}
