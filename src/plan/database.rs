//! Where the data lives: a SQLite file, or a PostgreSQL server named by a
//! `postgres://` URL. The `database` setting chooses; nothing outside the
//! store looks inside this type.

use std::convert::Infallible;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::secret::Secret;

/// What a URL's password (and a `password=` parameter) is shown as.
const HIDDEN: &str = "***";

/// The location of the store.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (created on first open).
    Sqlite(PathBuf),
    /// A PostgreSQL database; the URL may carry a password.
    Postgres(PostgresUrl),
}

impl Database {
    /// Read a `database` setting: a `postgres://` or `postgresql://` URL
    /// selects PostgreSQL, anything else is a SQLite path, relative ones
    /// resolved against `base` (the folder of apisync.toml).
    pub fn from_setting(value: &str, base: &Path) -> Result<Database, DatabaseError> {
        if PostgresUrl::looks_like(value) {
            PostgresUrl::parse(value).map(Database::Postgres)
        } else {
            Ok(Database::Sqlite(base.join(value)))
        }
    }

    /// A SQLite file at `path`, as given.
    pub fn sqlite(path: impl Into<PathBuf>) -> Database {
        Database::Sqlite(path.into())
    }
}

impl fmt::Display for Database {
    /// The path, or the URL with its password hidden: safe for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => path.display().fmt(f),
            Database::Postgres(url) => url.fmt(f),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres(url) => f.debug_tuple("Postgres").field(url).finish(),
        }
    }
}

/// A `database` value as typed on the command line (`--db`), before it is
/// read: a SQLite path, or a `postgres://` URL that may hold a password.
/// The text is a [`Secret`], so the parsed arguments' `Debug` never shows
/// a password; `Display` and `Debug` show the path, or the URL with its
/// password as `***` ([`Database::from_setting`] reads it).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseArg(Secret);

impl DatabaseArg {
    pub fn new(text: impl Into<String>) -> Self {
        DatabaseArg(Secret::new(text))
    }

    /// The text as typed, for [`Database::from_setting`]; never print it.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// Whether it names a PostgreSQL server rather than a SQLite file.
    pub fn is_url(&self) -> bool {
        PostgresUrl::looks_like(self.0.expose())
    }
}

impl FromStr for DatabaseArg {
    type Err = Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(DatabaseArg::new(text))
    }
}

impl fmt::Display for DatabaseArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Database::from_setting(self.0.expose(), Path::new("")) {
            Ok(database) => database.fmt(f),
            // An unreadable URL may still hold a password.
            Err(_) => f.write_str("postgres://..."),
        }
    }
}

impl fmt::Debug for DatabaseArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseArg")
            .field(&format_args!("{self}"))
            .finish()
    }
}

/// `sslmode` of a PostgreSQL URL: whether to speak TLS to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never: for a server on localhost or a private network.
    Disable,
    /// TLS when the server offers it, plain otherwise (the default, as libpq).
    Prefer,
    /// TLS or no connection.
    Require,
}

/// A `postgres://` URL. The whole text is a [`Secret`] (it may hold a
/// password); Display and Debug show it with the password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: Secret,
    shown: String,
    ssl_mode: SslMode,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatabaseError {
    #[error(
        "database URL {shown}: {reason} \
         (hint: write postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=require)"
    )]
    BadUrl { shown: String, reason: String },
}

impl PostgresUrl {
    fn looks_like(value: &str) -> bool {
        let lower = value.trim_start().to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    }

    /// Check a URL: it must parse, name a host, and carry a known
    /// `sslmode` (disable, prefer or require; prefer when absent).
    pub fn parse(text: &str) -> Result<PostgresUrl, DatabaseError> {
        let text = text.trim();
        let bad = |shown: String, reason: &str| DatabaseError::BadUrl {
            shown,
            reason: reason.to_string(),
        };
        let url = match url::Url::parse(text) {
            Ok(url) => url,
            // The text may hold a password: name it by its scheme only.
            Err(err) => {
                return Err(bad(
                    "postgres://...".into(),
                    &format!("is not a valid URL ({err})"),
                ));
            }
        };
        // The client takes everything before the first `@` as the user and
        // password; the URL parser stops at the first `/`, `?` or `#`. With
        // one of those in the password they disagree, and what is shown
        // could hold the password: both must read the same password.
        let url_password = url
            .password()
            .map(|p| percent_encoding::percent_decode_str(p).collect::<Vec<u8>>());
        if client_password(text) != url_password {
            return Err(bad(
                "postgres://...".into(),
                "its user name or password holds a character that must be percent-encoded \
                 (hint: write / as %2F, ? as %3F, # as %23, @ as %40 and : as %3A)",
            ));
        }
        let shown = redact(&url);
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(bad(shown, "the scheme must be postgres or postgresql"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad(shown, "names no host"));
        }
        let mut ssl_mode = SslMode::Prefer;
        for (key, value) in url.query_pairs() {
            if key == "sslmode" {
                ssl_mode = match value.as_ref() {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    other => {
                        return Err(bad(
                            shown,
                            &format!(
                                "sslmode \"{other}\" is not supported (use disable, prefer or require)"
                            ),
                        ));
                    }
                };
            }
        }
        Ok(PostgresUrl {
            url: Secret::new(text),
            shown,
            ssl_mode,
        })
    }

    /// The URL as written, password included: only for connecting.
    pub(crate) fn expose(&self) -> &str {
        self.url.expose()
    }

    pub(crate) fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The URL with its password hidden.
    pub fn redacted(&self) -> &str {
        &self.shown
    }
}

/// The password as tokio-postgres reads it from a URL: what follows the
/// first `:` of everything before the first `@` after the scheme,
/// percent-decoded (its `parse_credentials`).
fn client_password(text: &str) -> Option<Vec<u8>> {
    let (_, rest) = text.split_once("://")?;
    let (credentials, _) = rest.split_once('@')?;
    let (_, password) = credentials.split_once(':')?;
    Some(percent_encoding::percent_decode_str(password).collect())
}

/// The URL with the password and any `password=` parameter replaced.
fn redact(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot have a password; this one has one.
        let _ = shown.set_password(Some(HIDDEN));
    }
    if shown.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    HIDDEN.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // `***` is kept literal for readability.
    shown.to_string().replace("%2A%2A%2A", HIDDEN)
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PostgresUrl").field(&self.shown).finish()
    }
}

#[cfg(test)]
mod tests;
