//! JSON in SQLite's terms: a JSON pointer as a JSON path, JSON values
//! bound as SQLite's natural types, values read back as text.

use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};

use crate::store::error::StoreError;

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
