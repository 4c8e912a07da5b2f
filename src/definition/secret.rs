//! A secret as written: `{ env = "NAME" }`, `{ file = "PATH" }`,
//! `{ command = [argv...] }` or a plain string.
//!
//! A hand-written visitor instead of `#[serde(untagged)]`: untagged enums
//! report "data did not match any variant" without saying which key was wrong,
//! and their buffering would drop the spans that locate the error.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::secret::Secret;

/// The keys a secret table accepts, in the order the docs list them.
const SECRET_KEYS: &[&str] = &["env", "file", "command"];

/// Where a secret comes from, exactly as the file says.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretDef {
    Env(String),
    /// As written; `plan` resolves it against the naming file's folder.
    File(String),
    Command(Vec<String>),
    /// Allowed but warned about: the secret sits in a file that may be committed.
    Plain(Secret),
}

impl<'de> de::Deserialize<'de> for SecretDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = SecretDef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a secret: { env = \"NAME\" }, { file = \"PATH\" }, { command = [...] } or a string",
        )
    }

    // The value itself never goes into an error: it may be the secret.
    fn visit_str<E: de::Error>(self, value: &str) -> Result<SecretDef, E> {
        Ok(SecretDef::Plain(Secret::new(value)))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<SecretDef, E> {
        Ok(SecretDef::Plain(Secret::new(value)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretDef, A::Error> {
        let mut found: Option<SecretDef> = None;
        while let Some(key) = map.next_key::<String>()? {
            let value = match key.as_str() {
                "env" => SecretDef::Env(map.next_value()?),
                "file" => SecretDef::File(map.next_value()?),
                "command" => SecretDef::Command(map.next_value()?),
                other => return Err(de::Error::unknown_field(other, SECRET_KEYS)),
            };
            if found.is_some() {
                return Err(de::Error::custom(
                    "a secret takes exactly one of `env`, `file` or `command`",
                ));
            }
            found = Some(value);
        }
        found.ok_or_else(|| {
            de::Error::custom("a secret table needs one of `env`, `file` or `command`")
        })
    }
}
