//! apisync.toml as written: runtime settings, named auth, host limits.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use super::secret::SecretDef;

/// The whole of apisync.toml. Every field is optional: a project without
/// the file runs on defaults.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectDef {
    /// SQLite file, relative to this file's folder. Default `apisync.db`.
    #[schemars(with = "Option<String>")]
    pub database: Option<Spanned<String>>,
    /// Folder of job files, relative to this file's folder. Default `jobs`.
    #[schemars(with = "Option<String>")]
    pub jobs_dir: Option<Spanned<String>>,
    /// Most HTTP requests in flight, all jobs together. Default 8.
    #[schemars(with = "Option<usize>")]
    pub concurrency: Option<Spanned<usize>>,
    /// Most jobs running at once. Default 4.
    #[schemars(with = "Option<usize>")]
    pub job_concurrency: Option<Spanned<usize>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, AuthDef>")]
    pub auth: BTreeMap<Spanned<String>, AuthDef>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, HostDef>")]
    pub hosts: BTreeMap<Spanned<String>, HostDef>,
    /// Named secrets a job's request names as `{secret.NAME}`: from the
    /// same sources as an auth's secrets.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, SecretDef>")]
    pub secrets: BTreeMap<Spanned<String>, Spanned<SecretDef>>,
}

/// `[hosts."name"]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostDef {
    /// `N/s`, `N/min` or `N/h`.
    #[schemars(with = "Option<String>")]
    pub rate_limit: Option<Spanned<String>>,
    #[schemars(with = "Option<usize>")]
    pub concurrency: Option<Spanned<usize>>,
}

/// The `type` of an auth table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    Bearer,
    ApiKey,
    Basic,
    Oauth2ClientCredentials,
    Oauth2RefreshToken,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Bearer => "bearer",
            AuthType::ApiKey => "api_key",
            AuthType::Basic => "basic",
            AuthType::Oauth2ClientCredentials => "oauth2_client_credentials",
            AuthType::Oauth2RefreshToken => "oauth2_refresh_token",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthDef {
    Basic,
    Post,
}

/// An auth table, `[auth.NAME]` or inline in a job.
///
/// Flat, with `type` as a field, rather than a `#[serde(tag = "type")]` enum:
/// serde buffers internally tagged enums, which drops every `Spanned` inside
/// (toml then fails with "expected a spanned value") and points unknown-key
/// errors at the table header instead of the key. `plan` checks which keys
/// belong to which type, and says so by name.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthDef {
    #[serde(rename = "type")]
    #[schemars(with = "AuthType")]
    pub kind: Spanned<AuthType>,
    /// bearer.
    #[schemars(with = "Option<SecretDef>")]
    pub token: Option<Spanned<SecretDef>>,
    /// api_key: header name, or query parameter name (one of the two).
    #[schemars(with = "Option<String>")]
    pub header: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub query: Option<Spanned<String>>,
    #[schemars(with = "Option<SecretDef>")]
    pub key: Option<Spanned<SecretDef>>,
    /// basic.
    #[schemars(with = "Option<SecretDef>")]
    pub username: Option<Spanned<SecretDef>>,
    #[schemars(with = "Option<SecretDef>")]
    pub password: Option<Spanned<SecretDef>>,
    /// oauth2_*.
    #[schemars(with = "Option<String>")]
    pub token_url: Option<Spanned<String>>,
    #[schemars(with = "Option<SecretDef>")]
    pub client_id: Option<Spanned<SecretDef>>,
    #[schemars(with = "Option<SecretDef>")]
    pub client_secret: Option<Spanned<SecretDef>>,
    #[schemars(with = "Option<SecretDef>")]
    pub refresh_token: Option<Spanned<SecretDef>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub scopes: Option<Spanned<Vec<String>>>,
    #[schemars(with = "Option<ClientAuthDef>")]
    pub client_auth: Option<Spanned<ClientAuthDef>>,
    /// Duration text; default 60s.
    #[schemars(with = "Option<String>")]
    pub refresh_before: Option<Spanned<String>>,
    /// Duration text; lifetime assumed without `expires_in`. Default 1h.
    #[schemars(with = "Option<String>")]
    pub default_lifetime: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub audience: Option<Spanned<String>>,
}
