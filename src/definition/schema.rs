//! The JSON Schema of apisync.toml and job files, for editors (taplo / Even
//! Better TOML). It is derived from the very types that parse the files
//! (`JsonSchema` beside `Deserialize`), so it cannot drift from them;
//! `tests/schema.rs` checks that the copies in docs/schema/ are current and
//! that an independent validator accepts every file in the repository.
//!
//! The types whose `Deserialize` is written by hand (to keep spans and
//! precise errors, see `values.rs` and `secret.rs`) get their schema by
//! hand here, next to one another, saying the same as their visitors.

use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use super::{JobAuthDef, JobDef, LookbackDef, OrderedMap, ProjectDef, ScalarDef, SecretDef};

/// Which file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// apisync.toml.
    Project,
    /// jobs/NAME.toml.
    Job,
}

/// The schema of `kind` as pretty-printed JSON, ending in a newline.
/// Draft 7: the newest draft every TOML editor tooling reads.
pub fn schema_json(kind: SchemaKind) -> String {
    let generator = SchemaSettings::draft07().into_generator();
    let (mut schema, id) = match kind {
        SchemaKind::Project => (
            generator.into_root_schema_for::<ProjectDef>(),
            "apisync.toml",
        ),
        SchemaKind::Job => (generator.into_root_schema_for::<JobDef>(), "job file"),
    };
    schema.insert(
        "title".into(),
        format!("apisync {id} (version {})", env!("CARGO_PKG_VERSION")).into(),
    );
    let mut value = schema.to_value();
    drop_null(&mut value);
    // Serialising a JSON value cannot fail.
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// TOML has no null (an absent key is how a value is left out), so the
/// `null` that schemars allows for every `Option` is taken out again.
fn drop_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    map.insert("type".into(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(options)) = map.get_mut(key) {
                    options.retain(|o| o.get("type").and_then(Value::as_str) != Some("null"));
                }
            }
            map.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

impl JsonSchema for ScalarDef {
    fn schema_name() -> Cow<'static, str> {
        "Scalar".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A string, number or boolean, sent as its text.",
            "type": ["string", "number", "boolean"]
        })
    }
}

impl<V: JsonSchema> JsonSchema for OrderedMap<V> {
    fn schema_name() -> Cow<'static, str> {
        format!("Table_of_{}", V::schema_name()).into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<V>()
        })
    }
}

impl JsonSchema for LookbackDef {
    fn schema_name() -> Cow<'static, str> {
        "Lookback".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration such as \"10m\" (timestamp cursors) or an integer (integer cursors).",
            "type": ["string", "integer"]
        })
    }
}

impl JsonSchema for JobAuthDef {
    fn schema_name() -> Cow<'static, str> {
        "JobAuth".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The name of an [auth.NAME] of apisync.toml, or an inline auth table.",
            "anyOf": [
                { "type": "string" },
                generator.subschema_for::<super::AuthDef>()
            ]
        })
    }
}

impl JsonSchema for SecretDef {
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let only = |key: &str, value: serde_json::Value| {
            json_schema!({
                "type": "object",
                "properties": { (key): value },
                "required": [(key)],
                "additionalProperties": false
            })
        };
        json_schema!({
            "description": "A secret: { env = \"NAME\" }, { file = \"PATH\" }, { command = [...] } or a plain string (warned about).",
            "anyOf": [
                { "type": "string" },
                only("env", serde_json::json!({ "type": "string" })),
                only("file", serde_json::json!({ "type": "string" })),
                only("command", serde_json::json!({
                    "type": "array", "items": { "type": "string" }, "minItems": 1
                }))
            ]
        })
    }
}
