//! Checks of single values: durations, rate limits, identifiers, JSON
//! pointers, URL templates, cron, dates. Each returns the problem as
//! `(message, hint)` so the caller can place it.

use std::time::Duration;

use crate::definition::is_identifier;
use crate::plan::RateLimit;

pub(crate) type Problem = (String, Option<String>);

/// Columns apisync writes itself; user columns may not start with `_`.
pub(crate) const RESERVED_COLUMNS: &[&str] =
    &["_pk", "_data", "_synced_at", "_run_id", "_partition"];

/// Sample values substituted into `{partition...}` before a URL is parsed.
pub(crate) fn duration(key: &str, text: &str) -> Result<Duration, Problem> {
    humantime::parse_duration(text.trim()).map_err(|err| {
        (
            format!("`{key}` is not a duration: {err}"),
            Some("write a duration such as \"30s\", \"10m\" or \"1d\"".into()),
        )
    })
}

/// A duration that must be more than zero (timeouts, steps).
pub(crate) fn positive_duration(key: &str, text: &str) -> Result<Duration, Problem> {
    let value = duration(key, text)?;
    if value.is_zero() {
        return Err((format!("`{key}` must be more than zero"), None));
    }
    Ok(value)
}

pub(crate) fn rate_limit(text: &str) -> Result<RateLimit, Problem> {
    let bad = || {
        (
            format!("`rate_limit` \"{text}\" is not a rate"),
            Some("write N/s, N/min or N/h, such as \"20/s\"".into()),
        )
    };
    let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err((
            "`rate_limit` must allow at least one request".into(),
            Some("remove it for no limit".into()),
        ));
    }
    Ok(RateLimit { count, per })
}

/// Table name prefixes users may not take, compared ASCII
/// case-insensitively (as SQLite compares names): apisync's own tables and
/// replace jobs' staging tables start with `_apisync_`, and SQLite refuses
/// to create tables starting with `sqlite_`.
pub(crate) const RESERVED_TABLE_PREFIXES: &[&str] = &["_apisync_", "sqlite_"];

pub(crate) fn table_name(name: &str) -> Result<(), Problem> {
    if !is_identifier(name) {
        return Err((
            format!("table name \"{name}\" is not a valid identifier"),
            Some("use letters, digits and `_`, not starting with a digit".into()),
        ));
    }
    let lower = name.to_ascii_lowercase();
    match RESERVED_TABLE_PREFIXES
        .iter()
        .find(|p| lower.starts_with(**p))
    {
        None => Ok(()),
        Some(prefix) => Err((
            format!("table name \"{name}\" starts with `{prefix}`, which is reserved"),
            Some(match *prefix {
                "_apisync_" => "apisync keeps its own tables (run history, checkpoints, marks, \
                                leases, staging tables) under `_apisync_`; choose another name"
                    .into(),
                _ => "SQLite keeps its own tables under `sqlite_`; choose another name".into(),
            }),
        )),
    }
}

pub(crate) fn column_name(name: &str) -> Result<(), Problem> {
    if !is_identifier(name) {
        return Err((
            format!("column name \"{name}\" is not a valid identifier"),
            Some("use letters, digits and `_`, not starting with a digit".into()),
        ));
    }
    if name.starts_with('_') {
        return Err((
            format!("column name \"{name}\" starts with `_`, which is reserved"),
            Some(format!(
                "apisync writes {} itself; rename the column",
                RESERVED_COLUMNS.join(" ")
            )),
        ));
    }
    Ok(())
}

/// RFC 6901: "" (the whole document) or "/" followed by tokens with `~0`/`~1` escapes.
pub(crate) fn pointer(key: &str, text: &str, allow_empty: bool) -> Result<(), Problem> {
    if text.is_empty() && allow_empty {
        return Ok(());
    }
    if !text.starts_with('/') {
        return Err((
            format!("`{key}` \"{text}\" is not a JSON pointer"),
            Some(format!(
                "JSON pointers start with \"/\", such as \"/{}\"",
                text.trim_start_matches(['.', '$'])
            )),
        ));
    }
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err((
                format!("`{key}` \"{text}\" has a `~` that is not `~0` or `~1`"),
                Some("write `~` as ~0 and `/` inside a name as ~1".into()),
            ));
        }
    }
    Ok(())
}

/// A URL template: parses once each placeholder holds `sample(slot)`.
pub(crate) fn url_template(
    key: &str,
    template: &str,
    sample: impl Fn(super::template::Slot<'_>) -> String,
) -> Result<url::Url, Problem> {
    let text = super::template::render(template, |slot| Ok(sample(slot)))
        .unwrap_or_else(|_: String| template.to_string());
    let shown = without_userinfo(template);
    let url = url::Url::parse(&text).map_err(|err| {
        (
            format!("`{key}` \"{shown}\" is not a valid URL: {err}"),
            Some("write an absolute URL such as \"https://api.example.com/v1/items\"".into()),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err((
            format!("`{key}` \"{shown}\" must be an http or https URL"),
            None,
        ));
    }
    // A password in the URL would be printed with every URL, stored with
    // saved next URLs and sent wherever the URL goes: it belongs in an auth.
    if !url.username().is_empty() || url.password().is_some() {
        return Err((
            format!("`{key}` \"{shown}\" carries a user name or password in the URL"),
            Some("remove `user:password@` and use an auth with type = \"basic\" (its password can come from the environment or a file)".into()),
        ));
    }
    Ok(url)
}

/// The value a placeholder holds while a URL template is checked: the
/// environment's own value for `{env.NAME}` (so the origin it makes is the
/// one checked), a sample for the rest.
pub(crate) fn url_sample(slot: super::template::Slot<'_>, env: &[(String, String)]) -> String {
    use super::placeholder::Meaning;
    match Meaning::of(slot.name) {
        Meaning::Env(var) => super::placeholder::env_value(env, var)
            .unwrap_or("sample")
            .to_string(),
        Meaning::Partition("partition.start") => "2024-01-01".into(),
        Meaning::Partition("partition.end") => "2024-01-02".into(),
        _ => "sample".into(),
    }
}

/// `template` with the user info of its authority hidden, for messages:
/// `https://u:p@h/x` reads `https://***@h/x`.
pub(crate) fn without_userinfo(template: &str) -> String {
    let Some(start) = template.find("://").map(|i| i + 3) else {
        return template.to_string();
    };
    let authority_end = template[start..]
        .find(['/', '?', '#'])
        .map_or(template.len(), |i| start + i);
    match template[start..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &template[..start], &template[start + at..]),
        None => template.to_string(),
    }
}

/// A pointer into a parent job's stored records (`partitions.field`,
/// `fields`): a JSON pointer that the stores can read, so no `"` in a
/// name (SQLite's JSON paths cannot hold one).
pub(crate) fn parent_pointer(key: &str, text: &str) -> Result<(), Problem> {
    pointer(key, text, false)?;
    if text.contains('"') {
        return Err((
            format!(
                "`{key}` \"{text}\" has a `\"` in a name: the parent's table cannot be searched by such a name"
            ),
            Some("partition values come from fields whose names hold no double quote".into()),
        ));
    }
    Ok(())
}

/// `name` (a `what`: "secret name", "field name") can be written inside
/// a placeholder (`{secret.NAME}`, `{partition.NAME}`): letters, digits,
/// `_` and `-`, starting with a letter or `_`.
pub(crate) fn placeholder_name(what: &str, name: &str) -> Result<(), Problem> {
    let spelled = !name.is_empty()
        && name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || (i > 0 && (c.is_ascii_digit() || c == '-'))
        });
    match spelled {
        true => Ok(()),
        false => Err((
            format!("{what} `{name}` cannot be written as a placeholder"),
            Some("use letters, digits, `_` and `-`, starting with a letter or `_`".into()),
        )),
    }
}

/// Standard 5-field cron (minute hour day-of-month month day-of-week), UTC.
pub(crate) fn cron(text: &str) -> Result<(), Problem> {
    use croner::parser::{CronParser, Seconds, Year};
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    parser.parse(text).map(|_| ()).map_err(|err| {
        (
            format!("`schedule` \"{text}\" is not a cron expression: {err}"),
            Some("write 5 fields, minute hour day-of-month month day-of-week, such as \"*/15 * * * *\" (UTC)".into()),
        )
    })
}

/// YYYY-MM-DD or RFC 3339.
pub(crate) fn date_or_timestamp(text: &str) -> bool {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() || timestamp(text)
}

pub(crate) fn timestamp(text: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_checks_accept_good_and_refuse_bad() {
        assert_eq!(duration("t", "30s").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("t", "1d").unwrap(), Duration::from_secs(86400));
        assert!(duration("t", "30").is_err());
        assert!(positive_duration("t", "0s").is_err());
        assert_eq!(rate_limit("20/s").unwrap().count, 20);
        assert_eq!(rate_limit("5/min").unwrap().per, Duration::from_secs(60));
        assert_eq!(rate_limit("1/h").unwrap().per, Duration::from_secs(3600));
        for bad in ["20", "x/s", "20/d", "0/s", "-1/s"] {
            assert!(rate_limit(bad).is_err(), "{bad}");
        }
        assert!(table_name("acme_orders").is_ok());
        assert!(table_name("1x").is_err() && table_name("a-b").is_err());
        assert!(table_name("runs").is_ok() && table_name("Marks").is_ok());
        for reserved in [
            "_apisync_runs",
            "_APISYNC_marks",
            "_Apisync_Staging_x",
            "sqlite_stat1",
            "SQLite_x",
        ] {
            assert!(table_name(reserved).is_err(), "{reserved}");
        }
        assert!(table_name("_apisync").is_ok() && table_name("my_sqlite_x").is_ok());
        assert!(column_name("_apisync_x").is_err() && column_name("_partition").is_err());
        assert!(column_name("_data").is_err() && column_name("status").is_ok());
        assert!(pointer("p", "", true).is_ok() && pointer("p", "", false).is_err());
        assert!(pointer("p", "/a~1b", false).is_ok() && pointer("p", "/a~2", false).is_err());
        let url = |t: &str| url_template("url", t, |slot| url_sample(slot, &[]));
        assert!(url("https://x.example/{partition}/items").is_ok());
        let (message, hint) = url("http://user:pw-9f3a@x.example/items").unwrap_err();
        assert!(!message.contains("pw-9f3a"), "{message}");
        assert!(
            message.contains("\"http://***@x.example/items\""),
            "{message}"
        );
        assert!(hint.unwrap().contains("type = \"basic\""));
        assert!(url("ftp://x.example/").is_err());
        assert!(url("/relative").is_err());
        let env = [("SITE".to_string(), "eu.example:8443".to_string())];
        let site = url_template("url", "https://{env.SITE}/v1", |s| url_sample(s, &env));
        assert_eq!(site.unwrap().port(), Some(8443));
        assert!(cron("*/15 * * * *").is_ok());
        assert!(cron("0 */15 * * * *").is_err() && cron("61 * * * *").is_err());
        assert!(date_or_timestamp("2024-01-01") && date_or_timestamp("2024-01-01T00:00:00Z"));
        assert!(!date_or_timestamp("01/02/2024"));
    }
}
