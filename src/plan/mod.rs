//! Pure `definition -> plan`: defaults applied, URLs parsed, pagination
//! resolved, identifiers checked. Returns every problem at once; the only
//! I/O is `load_project` reading the files through `definition`.

mod auth;
mod checks;
mod database;
mod diagnostics;
mod incremental;
mod job;
mod load;
mod pagination;
mod placeholder;
mod project;
mod settings;
mod template;
mod types;

pub(crate) use checks::without_userinfo;
pub use database::{Database, DatabaseArg, DatabaseError, PostgresUrl, SslMode};
pub use diagnostics::{Diagnostic, Diagnostics};
pub use load::{Loaded, load_project, load_project_with_env, project_root};
pub(crate) use placeholder::{
    Meaning, SecretText, Values, env_value, now_text, parse_time, partition_placeholder,
    secrets_used, uses_now,
};
pub use settings::SettingsOverrides;
pub(crate) use template::{Piece, pieces as template_pieces};
pub use types::*;

#[cfg(test)]
mod tests;
