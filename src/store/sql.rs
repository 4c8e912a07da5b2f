//! Small SQL building blocks: identifier quoting, JSON pointer to JSON path,
//! and binding JSON values as SQLite's natural types.

use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};

use super::error::StoreError;

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

/// RFC 6901 pointer (`/a/b~1c/0`) to an SQLite JSON path (`$."a"."b/c"[0]`).
///
/// SQLite's path syntax has no escape inside a quoted key, so a key holding
/// `"` is refused. A token of plain digits is read as an array index: that is
/// what partition fields point at in practice, and SQLite cannot express
/// "index or key" in one path.
pub(crate) fn pointer_to_path(pointer: &str) -> Result<String, StoreError> {
    let refuse = |reason| StoreError::Pointer {
        pointer: pointer.to_string(),
        reason,
    };
    if pointer.is_empty() {
        return Ok("$".to_string());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(refuse(
            "a JSON pointer starts with '/' (hint: write \"/field\")",
        ));
    };
    let mut path = String::from("$");
    for token in rest.split('/') {
        let key = token.replace("~1", "/").replace("~0", "~");
        if is_index(&key) {
            path.push_str(&format!("[{key}]"));
        } else if key.contains('"') {
            return Err(refuse(
                "a key with '\"' cannot be queried in SQLite (hint: use another field)",
            ));
        } else {
            path.push_str(&format!(".\"{key}\""));
        }
    }
    Ok(path)
}

/// RFC 6901 pointer (`/a/b~1c/0`) to a PostgreSQL path array for `#>>`
/// (`{a,b/c,0}` as text[]): PostgreSQL reads each token as a key or an
/// index by what it finds, and any key can be expressed.
pub(crate) fn pointer_to_tokens(pointer: &str) -> Result<Vec<String>, StoreError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(StoreError::Pointer {
            pointer: pointer.to_string(),
            reason: "a JSON pointer starts with '/' (hint: write \"/field\")",
        });
    };
    Ok(rest
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn is_index(token: &str) -> bool {
    !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'))
}

/// A declared column's value as SQLite's natural type: integers stay
/// INTEGER, other numbers REAL (as `json_extract` does), booleans 0/1,
/// objects and arrays their JSON text.
pub(crate) fn json_to_sql(value: &serde_json::Value) -> ToSqlOutput<'_> {
    use serde_json::Value;
    match value {
        Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
        Value::Bool(b) => ToSqlOutput::Owned(SqlValue::Integer(i64::from(*b))),
        Value::Number(n) => match n.as_i64() {
            Some(i) => ToSqlOutput::Owned(SqlValue::Integer(i)),
            None => ToSqlOutput::Owned(SqlValue::Real(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        Value::Array(_) | Value::Object(_) => ToSqlOutput::Owned(SqlValue::Text(value.to_string())),
    }
}

/// A value read back from a table as text (partition keys are text).
pub(crate) fn value_to_text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(r) => Some(r.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
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

    #[test]
    fn pointer_to_path_cases() {
        let cases = [
            ("", "$"),
            ("/id", "$.\"id\""),
            ("/a/b", "$.\"a\".\"b\""),
            ("/a~1b/c~0d", "$.\"a/b\".\"c~d\""),
            ("/items/0/id", "$.\"items\"[0].\"id\""),
            ("/items/01", "$.\"items\".\"01\""),
            ("/a.b[0]", "$.\"a.b[0]\""),
            ("/", "$.\"\""),
        ];
        for (pointer, path) in cases {
            assert_eq!(pointer_to_path(pointer).unwrap(), path, "{pointer}");
        }
    }

    #[test]
    fn pointer_to_path_refuses_what_sqlite_cannot_express() {
        for bad in ["id", "/a\"b"] {
            let err = pointer_to_path(bad).unwrap_err();
            assert!(matches!(err, StoreError::Pointer { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn json_values_map_to_natural_types() {
        use serde_json::json;
        let own = |v: serde_json::Value| match json_to_sql(&v) {
            ToSqlOutput::Owned(o) => o,
            ToSqlOutput::Borrowed(b) => SqlValue::try_from(b).unwrap(),
            _ => panic!("unexpected output"),
        };
        assert_eq!(own(json!(null)), SqlValue::Null);
        assert_eq!(own(json!(true)), SqlValue::Integer(1));
        assert_eq!(own(json!(false)), SqlValue::Integer(0));
        assert_eq!(own(json!(-7)), SqlValue::Integer(-7));
        assert_eq!(own(json!(1.5)), SqlValue::Real(1.5));
        assert_eq!(own(json!("a")), SqlValue::Text("a".into()));
        assert_eq!(own(json!({"a": [1]})), SqlValue::Text("{\"a\":[1]}".into()));
    }
}
