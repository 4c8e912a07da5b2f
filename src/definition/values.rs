//! Small value shapes of the job format that serde's derives cannot express
//! without `untagged`: scalars written as string or number, tables whose key
//! order matters, and "a string or a table" fields.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use toml::Spanned;

use super::project::AuthDef;

/// A string, integer, float or boolean, kept as text: users write
/// `limit = 100` as often as `limit = "100"`, and both mean the same text on
/// the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarDef(pub String);

impl<'de> Deserialize<'de> for ScalarDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = ScalarDef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarDef, E> {
        Ok(ScalarDef(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarDef, E> {
        Ok(ScalarDef(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarDef, E> {
        Ok(ScalarDef(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarDef, E> {
        Ok(ScalarDef(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarDef, E> {
        Ok(ScalarDef(v.to_string()))
    }
}

/// A table whose keys keep the order (and spelling) they were written in:
/// query parameters and headers go on the wire in that order, columns are
/// created in it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(Spanned<String>, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedVisitor(PhantomData))
    }
}

struct OrderedVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
    type Value = OrderedMap<V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry()? {
            entries.push((key, value));
        }
        Ok(OrderedMap(entries))
    }
}

/// `lookback`: a duration string (timestamp cursors) or an integer (integer
/// cursors); `plan` checks which one fits the cursor_type.
#[derive(Debug, Clone, PartialEq)]
pub enum LookbackDef {
    Text(String),
    Integer(i64),
}

impl<'de> Deserialize<'de> for LookbackDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LookbackVisitor)
    }
}

struct LookbackVisitor;

impl Visitor<'_> for LookbackVisitor {
    type Value = LookbackDef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"10m\" or an integer")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<LookbackDef, E> {
        Ok(LookbackDef::Text(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<LookbackDef, E> {
        Ok(LookbackDef::Integer(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<LookbackDef, E> {
        i64::try_from(v)
            .map(LookbackDef::Integer)
            .map_err(|_| E::custom("lookback is too large"))
    }
}

/// A job's `auth`: the name of an `[auth.NAME]` of apisync.toml, or an inline
/// table of the same shape.
#[derive(Debug, Clone, PartialEq)]
pub enum JobAuthDef {
    Named(String),
    Inline(Box<AuthDef>),
}

impl<'de> Deserialize<'de> for JobAuthDef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JobAuthVisitor)
    }
}

struct JobAuthVisitor;

impl<'de> Visitor<'de> for JobAuthVisitor {
    type Value = JobAuthDef;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the name of an [auth.NAME] of apisync.toml or an inline auth table")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<JobAuthDef, E> {
        Ok(JobAuthDef::Named(v.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<JobAuthDef, A::Error> {
        // Hands the same map access on, so spans and unknown-key errors of
        // the inline table stay as precise as those of [auth.NAME].
        let def = AuthDef::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(JobAuthDef::Inline(Box::new(def)))
    }
}
