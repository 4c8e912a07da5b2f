//! Auth tables -> `AuthPlan`: which keys each type takes, secrets resolved to
//! their sources (never their values), durations and the token URL checked.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::checks;
use super::diagnostics::Sink;
use crate::definition::{AuthDef, AuthType, ClientAuthDef, SecretDef};
use crate::plan::{ApiKeyPlacement, AuthPlan, ClientAuthMethod, OAuthPlan, SecretSource};

const OAUTH_KEYS: &[&str] = &[
    "token_url",
    "client_id",
    "client_secret",
    "scopes",
    "client_auth",
    "refresh_before",
    "default_lifetime",
    "audience",
];

/// The keys each auth type takes besides `type`.
fn keys_of(kind: AuthType) -> Vec<&'static str> {
    match kind {
        AuthType::Bearer => vec!["token"],
        AuthType::ApiKey => vec!["header", "query", "key"],
        AuthType::Basic => vec!["username", "password"],
        AuthType::Oauth2ClientCredentials => OAUTH_KEYS.to_vec(),
        AuthType::Oauth2RefreshToken => [OAUTH_KEYS, &["refresh_token"]].concat(),
    }
}

const ALL_TYPES: &[AuthType] = &[
    AuthType::Bearer,
    AuthType::ApiKey,
    AuthType::Basic,
    AuthType::Oauth2ClientCredentials,
    AuthType::Oauth2RefreshToken,
];

/// The keys present in the table, with the span of their values.
fn present(def: &AuthDef) -> Vec<(&'static str, Range<usize>)> {
    fn span<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
        value.as_ref().map(Spanned::span)
    }
    [
        ("token", span(&def.token)),
        ("header", span(&def.header)),
        ("query", span(&def.query)),
        ("key", span(&def.key)),
        ("username", span(&def.username)),
        ("password", span(&def.password)),
        ("token_url", span(&def.token_url)),
        ("client_id", span(&def.client_id)),
        ("client_secret", span(&def.client_secret)),
        ("refresh_token", span(&def.refresh_token)),
        ("scopes", span(&def.scopes)),
        ("client_auth", span(&def.client_auth)),
        ("refresh_before", span(&def.refresh_before)),
        ("default_lifetime", span(&def.default_lifetime)),
        ("audience", span(&def.audience)),
    ]
    .into_iter()
    .filter_map(|(key, span)| span.map(|s| (key, s)))
    .collect()
}

/// `prefix` is the dotted place of the table (`auth.acme` or `auth`).
pub(crate) fn plan_auth(def: &AuthDef, prefix: &str, sink: &mut Sink<'_>) -> Option<AuthPlan> {
    let kind = *def.kind.get_ref();
    let allowed = keys_of(kind);
    let mut ok = true;
    for (key, span) in present(def) {
        if allowed.contains(&key) {
            continue;
        }
        ok = false;
        let owners: Vec<&str> = ALL_TYPES
            .iter()
            .filter(|t| keys_of(**t).contains(&key))
            .map(|t| t.as_str())
            .collect();
        sink.at_span(
            span,
            &format!("{prefix}.{key}"),
            format!("`{key}` does not apply to auth type \"{}\"", kind.as_str()),
            Some(format!(
                "`{key}` belongs to type \"{}\"; keys of \"{}\": {}",
                owners.join("\" or \""),
                kind.as_str(),
                allowed.join(", ")
            )),
        );
    }
    let plan = build(def, kind, prefix, sink);
    if ok { plan } else { None }
}

fn build(def: &AuthDef, kind: AuthType, prefix: &str, sink: &mut Sink<'_>) -> Option<AuthPlan> {
    let need = |value: &Option<Spanned<SecretDef>>, key: &str, sink: &mut Sink<'_>| {
        required_secret(def, value, key, prefix, sink)
    };
    match kind {
        AuthType::Bearer => Some(AuthPlan::Bearer {
            token: need(&def.token, "token", sink)?,
        }),
        AuthType::Basic => {
            let username = need(&def.username, "username", sink);
            let password = need(&def.password, "password", sink);
            Some(AuthPlan::Basic {
                username: username?,
                password: password?,
            })
        }
        AuthType::ApiKey => {
            let key = need(&def.key, "key", sink);
            let placement = api_key_placement(def, prefix, sink);
            Some(AuthPlan::ApiKey {
                placement: placement?,
                key: key?,
            })
        }
        AuthType::Oauth2ClientCredentials => {
            Some(AuthPlan::ClientCredentials(oauth(def, prefix, sink)?))
        }
        AuthType::Oauth2RefreshToken => {
            let refresh_token = need(&def.refresh_token, "refresh_token", sink);
            let oauth = oauth(def, prefix, sink);
            Some(AuthPlan::RefreshToken {
                oauth: oauth?,
                refresh_token: refresh_token?,
            })
        }
    }
}

fn required_secret(
    def: &AuthDef,
    value: &Option<Spanned<SecretDef>>,
    key: &str,
    prefix: &str,
    sink: &mut Sink<'_>,
) -> Option<SecretSource> {
    match value {
        Some(value) => Some(secret_source(value, &format!("{prefix}.{key}"), sink)),
        None => {
            missing(def, key, prefix, sink);
            None
        }
    }
}

fn missing(def: &AuthDef, key: &str, prefix: &str, sink: &mut Sink<'_>) {
    sink.at(
        &def.kind,
        &format!("{prefix}.{key}"),
        format!(
            "auth type \"{}\" needs `{key}`",
            def.kind.get_ref().as_str()
        ),
        Some(format!(
            "add `{key} = {{ env = \"NAME\" }}` (or the value) to [{prefix}]"
        )),
    );
}

/// A secret's source; relative files resolve against the naming file's folder.
pub(crate) fn secret_source(
    value: &Spanned<SecretDef>,
    key: &str,
    sink: &mut Sink<'_>,
) -> SecretSource {
    match value.get_ref() {
        SecretDef::Env(name) => SecretSource::Env(name.clone()),
        SecretDef::File(path) => SecretSource::File(sink.base_dir().join(path)),
        SecretDef::Command(argv) => {
            if argv.is_empty() {
                sink.at(value, key, format!("`{key}` has an empty command"), Some("give the program and its arguments, such as [\"vault\", \"kv\", \"get\", ...]".into()));
            }
            SecretSource::Command(argv.clone())
        }
        SecretDef::Plain(secret) => {
            sink.warn_at(
                value.span(),
                key,
                &format!("`{key}` is written into the file; prefer {{ env = \"NAME\" }} or {{ file = \"PATH\" }}"),
            );
            SecretSource::Plain(secret.clone())
        }
    }
}

fn api_key_placement(def: &AuthDef, prefix: &str, sink: &mut Sink<'_>) -> Option<ApiKeyPlacement> {
    match (&def.header, &def.query) {
        (Some(header), None) => Some(ApiKeyPlacement::Header(header.get_ref().clone())),
        (None, Some(query)) => Some(ApiKeyPlacement::Query(query.get_ref().clone())),
        (Some(_), Some(query)) => {
            sink.at(
                query,
                &format!("{prefix}.query"),
                "api_key takes `header` or `query`, not both",
                None,
            );
            None
        }
        (None, None) => {
            sink.at(
                &def.kind,
                &format!("{prefix}.header"),
                "auth type \"api_key\" needs `header` (or `query`)",
                Some("add `header = \"X-Api-Key\"`".into()),
            );
            None
        }
    }
}

fn oauth(def: &AuthDef, prefix: &str, sink: &mut Sink<'_>) -> Option<OAuthPlan> {
    let token_url = match &def.token_url {
        Some(url) => checks::url_template("token_url", url.get_ref(), |slot| {
            checks::url_sample(slot, &[])
        })
        .map_err(|(m, h)| sink.at(url, &format!("{prefix}.token_url"), m, h))
        .ok(),
        None => {
            sink.at(
                &def.kind,
                &format!("{prefix}.token_url"),
                format!(
                    "auth type \"{}\" needs `token_url`",
                    def.kind.get_ref().as_str()
                ),
                None,
            );
            None
        }
    };
    let client_id = required_secret(def, &def.client_id, "client_id", prefix, sink);
    let client_secret = def
        .client_secret
        .as_ref()
        .map(|s| secret_source(s, &format!("{prefix}.client_secret"), sink));
    let refresh_before = duration_or(
        &def.refresh_before,
        "refresh_before",
        Duration::from_secs(60),
        prefix,
        sink,
    );
    let default_lifetime = duration_or(
        &def.default_lifetime,
        "default_lifetime",
        Duration::from_secs(3600),
        prefix,
        sink,
    );
    Some(OAuthPlan {
        token_url: token_url?,
        client_id: client_id?,
        client_secret,
        scopes: def
            .scopes
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default(),
        client_auth: match def.client_auth.as_ref().map(|c| *c.get_ref()) {
            Some(ClientAuthDef::Post) => ClientAuthMethod::Post,
            _ => ClientAuthMethod::Basic,
        },
        refresh_before: refresh_before?,
        audience: def.audience.as_ref().map(|a| a.get_ref().clone()),
        default_lifetime: default_lifetime?,
    })
}

/// A duration key with its default; None (after reporting) when it is bad.
pub(crate) fn duration_or(
    value: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
    prefix: &str,
    sink: &mut Sink<'_>,
) -> Option<Duration> {
    let Some(value) = value else {
        return Some(default);
    };
    checks::duration(key, value.get_ref())
        .map_err(|(m, h)| sink.at(value, &format!("{prefix}.{key}"), m, h))
        .ok()
}
