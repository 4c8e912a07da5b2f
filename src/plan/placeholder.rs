//! What a request placeholder names and how a time-valued one is written.
//!
//! `template.rs` finds placeholders in text; this file gives each name its
//! meaning (`{env.SITE}` is an environment variable, `{mark:epoch}` the
//! stream's high-water mark in epoch seconds) so that validation and the
//! request builder read names the same way.

use chrono::{DateTime, NaiveDate, Utc};

use super::template::Slot;

/// What a placeholder stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Meaning<'a> {
    /// `{partition}`, `{partition.start}`, `{partition.end}`: a value of the
    /// stream's partition, named as in `Partition::vars`.
    Partition(&'a str),
    /// `{env.NAME}`: an environment variable, read when the job is planned.
    Env(&'a str),
    /// `{secret.NAME}`: a secret of `[secrets]`, a credential in every
    /// respect: filled in by the HTTP layer, only for the job's origin.
    Secret(&'a str),
    /// `{mark}`: the stream's high-water mark (lookback applied, `initial`
    /// on a first run).
    Mark,
    /// `{now}`: the run's start time; a resumed stream keeps the one it
    /// started with.
    Now,
    /// `{window.start}`: where the stream's current window begins.
    WindowStart,
    /// `{window.end}`: where it ends (not included).
    WindowEnd,
    /// Any other name.
    Unknown,
}

impl<'a> Meaning<'a> {
    pub(crate) fn of(name: &'a str) -> Self {
        match name {
            "mark" => Meaning::Mark,
            "now" => Meaning::Now,
            "window.start" => Meaning::WindowStart,
            "window.end" => Meaning::WindowEnd,
            "partition" => Meaning::Partition(name),
            _ if name.starts_with("partition.") && name.len() > "partition.".len() => {
                Meaning::Partition(name)
            }
            _ => match (name.strip_prefix("env."), name.strip_prefix("secret.")) {
                (Some(var), _) if !var.is_empty() => Meaning::Env(var),
                (_, Some(secret)) if !secret.is_empty() => Meaning::Secret(secret),
                _ => Meaning::Unknown,
            },
        }
    }
}

/// How a time value is written: `{mark:epoch}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TimeFormat {
    /// RFC 3339 in UTC, whole seconds unless the value has fractions.
    Rfc3339,
    /// Seconds since 1970-01-01T00:00:00Z.
    Epoch,
    /// Milliseconds since 1970-01-01T00:00:00Z.
    EpochMs,
    /// YYYY-MM-DD (UTC).
    Date,
    /// A strftime pattern (chrono's), checked when the job is planned.
    Pattern(String),
}

impl TimeFormat {
    /// The format `text` names; Err says what is accepted.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        use chrono::format::{Item, StrftimeItems};
        match text {
            "rfc3339" => Ok(TimeFormat::Rfc3339),
            "epoch" => Ok(TimeFormat::Epoch),
            "epoch_ms" => Ok(TimeFormat::EpochMs),
            "date" => Ok(TimeFormat::Date),
            pattern if pattern.contains('%') => {
                if StrftimeItems::new(pattern).any(|item| matches!(item, Item::Error)) {
                    return Err(format!("`{pattern}` is not a valid strftime pattern"));
                }
                // Some items chrono reads but cannot write (`%#z`): tried
                // once here, so a run never meets them.
                let format = TimeFormat::Pattern(pattern.to_string());
                let sample = format.write("2024-01-02T03:04:05Z").map_err(|_| {
                    format!("`{pattern}` cannot be written (chrono only reads some of its items)")
                })?;
                // `%n` and `%t` write a line break or a tab: not something
                // a header value, or any request value, should get.
                if sample.chars().any(char::is_control) {
                    return Err(format!(
                        "`{pattern}` writes a control character (`%n` or `%t`)"
                    ));
                }
                Ok(format)
            }
            other => Err(format!(
                "unknown format `{other}`: write epoch, epoch_ms, date, rfc3339, or a strftime pattern such as %Y-%m-%dT%H:%M"
            )),
        }
    }

    /// `value` (RFC 3339, or YYYY-MM-DD for midnight UTC) in this format.
    pub(crate) fn write(&self, value: &str) -> Result<String, String> {
        let at = parse_time(value).ok_or_else(|| {
            format!("{value:?} is not an RFC 3339 timestamp or a date, so it cannot be formatted")
        })?;
        Ok(match self {
            TimeFormat::Rfc3339 => at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            TimeFormat::Epoch => at.timestamp().to_string(),
            TimeFormat::EpochMs => at.timestamp_millis().to_string(),
            TimeFormat::Date => at.format("%Y-%m-%d").to_string(),
            TimeFormat::Pattern(pattern) => {
                // `to_string` would panic on an item chrono cannot write.
                use std::fmt::Write as _;
                let mut out = String::new();
                write!(out, "{}", at.format(pattern))
                    .map_err(|_| format!("the format `{pattern}` cannot be written"))?;
                out
            }
        })
    }
}

pub(crate) fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Some(at.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc())
}

/// A time as `{now}` holds it: RFC 3339 UTC, whole seconds.
pub(crate) fn now_text(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The values one stream's placeholders take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Values<'a> {
    pub partition: &'a crate::plan::Partition,
    /// `RequestPlan::env`.
    pub env: &'a [(String, String)],
    /// The stream's mark (`StreamPosition::since`).
    pub mark: Option<&'a str>,
    /// The mark is a timestamp (`cursor_type = "timestamp"`): without a
    /// format it is written as RFC 3339 in UTC, whatever spelling the
    /// server used.
    pub mark_is_time: bool,
    /// The run's start time (`StreamPosition::now`).
    pub now: Option<&'a str>,
    /// The current window's start and end (`StreamPosition::window`).
    pub window: Option<(&'a str, &'a str)>,
}

impl Values<'_> {
    /// The text `slot` stands for, formatted, not yet encoded for where
    /// it lands. Err when it has no value here (validation refuses a job
    /// that could get there, so only a misuse does).
    pub(crate) fn text(&self, slot: Slot<'_>) -> Result<String, String> {
        let meaning = Meaning::of(slot.name);
        let raw = match meaning {
            Meaning::Partition(var) => self.partition.value(var),
            Meaning::Env(var) => env_value(self.env, var),
            Meaning::Mark => self.mark,
            Meaning::Now => self.now,
            Meaning::WindowStart => self.window.map(|(start, _)| start),
            Meaning::WindowEnd => self.window.map(|(_, end)| end),
            // Never text here: `parts` keeps a secret apart for the HTTP layer.
            Meaning::Secret(_) | Meaning::Unknown => None,
        };
        let raw =
            raw.ok_or_else(|| format!("the placeholder {{{}}} has no value here", slot.name))?;
        match (slot.format, meaning) {
            // A timestamp mark that does not parse (a server's own
            // spelling) goes as it was stored, as v1's `param` sends it.
            (None, Meaning::Mark | Meaning::WindowStart | Meaning::WindowEnd)
                if self.mark_is_time =>
            {
                Ok(TimeFormat::Rfc3339
                    .write(raw)
                    .unwrap_or_else(|_| raw.to_string()))
            }
            (None, _) => Ok(raw.to_string()),
            (Some(format), _) => TimeFormat::parse(format)?.write(raw),
        }
    }

    /// The template as text with each secret kept apart by name, so that
    /// only the HTTP layer, for a request it may send one with, puts the
    /// secret in. No value can turn into a secret: a partition value that
    /// reads `{secret.x}` stays that text. `each` sees every value filled
    /// in (a header checks them for white space HTTP would drop).
    pub(crate) fn parts(
        &self,
        template: &str,
        mut each: impl FnMut(&str),
    ) -> Result<SecretText, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        for piece in super::template::pieces(template) {
            match piece {
                super::template::Piece::Text(literal) => text.push_str(&literal),
                super::template::Piece::Placeholder { name, format, at } => {
                    match Meaning::of(name) {
                        Meaning::Secret(secret) => {
                            parts.push(Part::Text(std::mem::take(&mut text)));
                            parts.push(Part::Secret(secret.to_string()));
                        }
                        _ => {
                            let value = self.text(Slot { name, format, at })?;
                            each(&value);
                            text.push_str(&value);
                        }
                    }
                }
            }
        }
        parts.push(Part::Text(text));
        parts.retain(|part| !matches!(part, Part::Text(t) if t.is_empty()));
        Ok(SecretText(parts))
    }

    /// The URL template with each value encoded for where it stands (one
    /// path segment, a query component): a value never changes the URL's
    /// structure. Only `{env.*}` may stand in the origin, and only as a
    /// host name and port.
    pub(crate) fn url(&self, template: &str) -> Result<String, String> {
        use super::template::{UrlPart, encode_for_url, url_part};
        super::template::render(template, |slot| {
            let text = self.text(slot)?;
            match (Meaning::of(slot.name), url_part(template, slot.at)) {
                (Meaning::Env(_), UrlPart::Origin) if is_host_text(&text) => Ok(text),
                (_, part) => encode_for_url(&text, part),
            }
        })
    }

    /// The URL template with only `{env.*}` filled: the origin a
    /// credential is pinned to. No partition value, mark or server text
    /// takes part in it; other placeholders stay as text.
    pub(crate) fn pinned_url(&self, template: &str) -> Result<String, String> {
        super::template::render(template, |slot| match Meaning::of(slot.name) {
            Meaning::Env(_) => self.text(slot),
            _ => Ok(match slot.format {
                Some(format) => format!("{{{}:{format}}}", slot.name),
                None => format!("{{{}}}", slot.name),
            }),
        })
    }
}

/// A request string that holds a secret: text, and secrets by name.
/// `Debug` shows the names, never a value (it holds none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretText(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Secret(String),
}

impl SecretText {
    /// Whether a secret stands in it.
    pub(crate) fn has_secret(&self) -> bool {
        self.0.iter().any(|part| matches!(part, Part::Secret(_)))
    }

    /// The text without secrets (Err names the secret it holds).
    pub(crate) fn into_plain(self) -> Result<String, SecretText> {
        if self.has_secret() {
            return Err(self);
        }
        Ok(self
            .0
            .into_iter()
            .map(|part| match part {
                Part::Text(text) | Part::Secret(text) => text,
            })
            .collect())
    }

    /// The text with `stand_in` where each secret goes: what can be checked
    /// of it before the secret is known.
    pub(crate) fn shape(&self, stand_in: &str) -> String {
        self.0
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.as_str(),
                Part::Secret(_) => stand_in,
            })
            .collect()
    }

    /// The whole text with each secret's value in, for the one request
    /// being sent; Err names a secret `value` does not know.
    pub(crate) fn expose(
        &self,
        value: impl Fn(&str) -> Option<crate::secret::Secret>,
    ) -> Result<crate::secret::Secret, String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Secret(name) => match value(name) {
                    Some(secret) => out.push_str(secret.expose()),
                    None => {
                        return Err(format!("the secret {name:?} was not prepared for this run"));
                    }
                },
            }
        }
        Ok(crate::secret::Secret::new(out))
    }
}

/// What a job can fill in its request, for validation.
#[derive(Clone, Copy)]
pub(crate) struct Fillable<'a> {
    /// The partition's value names: `partition`, or `partition.start` and
    /// `partition.end`; empty without `[partitions]`.
    pub partition: &'a [&'a str],
    /// The job's `[incremental]`: its cursor type, and whether `initial` is
    /// given (a first run has no mark to send without it).
    pub mark: Option<(crate::plan::CursorType, bool)>,
    /// The environment (after `--env-file`).
    pub env: &'a [(String, String)],
    /// The names of `[secrets]`.
    pub secrets: &'a std::collections::BTreeSet<String>,
    /// The job's URL is plain http to a host that is not loopback, where
    /// no secret may go.
    pub insecure: bool,
    /// The partitions are `dates`: `{partition.start}` and `{partition.end}`
    /// are times, which take a format.
    pub dates: bool,
}

/// The value of environment variable `name` in `env` (as the plan holds
/// the environment: a list of pairs).
pub(crate) fn env_value<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(var, _)| var == name)
        .map(|(_, value)| value.as_str())
}

impl Fillable<'_> {
    fn listed(&self) -> String {
        let mut names: Vec<String> = self.partition.iter().map(|n| format!("{{{n}}}")).collect();
        if self.mark.is_some() {
            names.extend(["{mark}", "{window.start}", "{window.end}"].map(String::from));
        }
        names.extend(["{now}".to_string(), "{env.NAME}".to_string()]);
        names.extend(self.secrets.iter().map(|name| format!("{{secret.{name}}}")));
        names.join(", ")
    }
}

/// The problems of the placeholders of `text` (the value of `key`): names
/// the job cannot fill, formats that do not apply, and (in `request.url`,
/// `url` true) any placeholder but `{env.*}` in the scheme, host or port,
/// where a value would choose where the credential goes.
pub(crate) fn check(
    key: &str,
    text: &str,
    job: &Fillable<'_>,
    url: bool,
) -> Vec<super::checks::Problem> {
    use super::template::{UrlPart, placeholders, url_part};
    let literal = "write {{name}} for a literal {name}";
    let mut problems = Vec::new();
    for slot in placeholders(text) {
        let name = slot.name;
        let meaning = Meaning::of(name);
        let in_origin = url && url_part(text, slot.at) == UrlPart::Origin;
        let unknown = || {
            (
                format!("unknown placeholder `{{{name}}}` in `{key}`"),
                Some(format!(
                    "this job's placeholders are {}; {literal}",
                    job.listed()
                )),
            )
        };
        let time_valued = match &meaning {
            Meaning::Partition(_) if job.partition.is_empty() => {
                problems.push((
                    format!("`{{{name}}}` is used in `{key}` but the job has no [partitions]"),
                    Some("add [partitions] or remove the placeholder".into()),
                ));
                continue;
            }
            Meaning::Unknown => {
                problems.push(unknown());
                continue;
            }
            Meaning::Partition(var) if !job.partition.contains(var) => {
                problems.push(unknown());
                continue;
            }
            Meaning::Partition(var) => {
                job.dates && matches!(*var, "partition.start" | "partition.end")
            }
            Meaning::Env(var) => {
                match env_value(job.env, var) {
                    // Not a problem of the file: `missing_env` reports it
                    // to the commands that send requests.
                    None => {}
                    Some(value) if in_origin && !is_host_text(value) => problems.push((
                        format!("`{{{name}}}` stands in the host of `{key}`, but {var} holds more than a host name and port"),
                        Some(format!("set {var} to a host such as api.eu.example or api.example:8443 (no scheme, path, `@` or spaces)")),
                    )),
                    // Known now: refused now, as the run would refuse it
                    // (an empty or `..` path segment).
                    Some(value) if url && !in_origin => {
                        if let Err(message) = super::template::encode_for_url(value, url_part(text, slot.at)) {
                            problems.push((
                                format!("`{{{name}}}` in `{key}`: {message}"),
                                Some(format!("set {var} to a value that can stand there")),
                            ));
                        }
                    }
                    Some(_) => {}
                }
                false
            }
            Meaning::Mark | Meaning::WindowStart | Meaning::WindowEnd => match job.mark {
                None => {
                    problems.push((
                        format!("`{{{name}}}` is used in `{key}` but the job has no [incremental]"),
                        Some("add [incremental] with cursor_field, cursor_type and initial".into()),
                    ));
                    continue;
                }
                Some((_, false)) => {
                    problems.push((
                        format!(
                            "`{{{name}}}` is used in `{key}` but [incremental] has no `initial`"
                        ),
                        Some(
                            "a first run has no mark to start from: add incremental.initial".into(),
                        ),
                    ));
                    continue;
                }
                Some((cursor_type, true)) => cursor_type == crate::plan::CursorType::Timestamp,
            },
            Meaning::Now => true,
            Meaning::Secret(secret) => {
                if !job.secrets.contains(*secret) {
                    let defined = match job.secrets.is_empty() {
                        true => "apisync.toml has no [secrets]".to_string(),
                        false => format!(
                            "[secrets] has {}",
                            job.secrets
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    problems.push((
                        format!("unknown secret `{{{name}}}` in `{key}`"),
                        Some(format!(
                            "{defined}; define it there, such as {secret} = {{ env = \"NAME\" }}"
                        )),
                    ));
                } else if url {
                    problems.push((
                        format!("`{{{name}}}` cannot stand in `{key}`"),
                        Some("put it in [request] query, headers or body: there it is added only to requests for the job's own origin, and never saved with a next-page URL".into()),
                    ));
                } else if job.insecure {
                    problems.push((
                        format!("`{{{name}}}` in `{key}` would go over plain http to a host that is not loopback"),
                        Some("use an https URL: a secret goes over plain http only to 127.0.0.1, ::1 or localhost".into()),
                    ));
                }
                if url {
                    // Reported above; not again as an origin placeholder.
                    continue;
                }
                false
            }
        };
        if let Some(format) = slot.format {
            if !time_valued {
                problems.push((
                    format!("`{{{name}:{format}}}` in `{key}`: only a time value takes a format"),
                    Some("formats apply to {now}, {mark} and {window.*} with cursor_type = \"timestamp\", and {partition.start}/{partition.end}; remove `:".to_string() + format + "`"),
                ));
            } else if let Err(message) = TimeFormat::parse(format) {
                problems.push((format!("`{{{name}:{format}}}` in `{key}`: {message}"), None));
            }
        }
        if in_origin && !matches!(meaning, Meaning::Env(_)) {
            problems.push((
                format!("placeholder `{{{name}}}` is in the scheme, host or port of `{key}`"),
                Some("put placeholders in the path or the query (only {env.NAME} may name the host): the origin is where the credential goes, so it is fixed by the job".into()),
            ));
        }
    }
    problems
}

/// Whether `value` can stand in a URL's host and port without changing
/// anything else about the URL: letters, digits, `-`, `.`, `:` and the
/// brackets of an IPv6 address.
pub(crate) fn is_host_text(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '[' | ']'))
}

/// The `[secrets]` a job's request names, and the query parameters whose
/// value holds one (redacted by name in printed URLs, as an api_key is).
pub(crate) fn secrets_used(request: &crate::plan::RequestPlan) -> (Vec<String>, Vec<String>) {
    let texts = request_texts(request);
    let mut names: Vec<String> = Vec::new();
    for text in texts {
        for slot in super::template::placeholders(text) {
            if let Meaning::Secret(name) = Meaning::of(slot.name)
                && !names.iter().any(|n| n == name)
            {
                names.push(name.to_string());
            }
        }
    }
    let params = request
        .query
        .iter()
        .filter(|(_, value)| {
            super::template::placeholders(value)
                .any(|slot| matches!(Meaning::of(slot.name), Meaning::Secret(_)))
        })
        .map(|(key, _)| key.clone())
        .collect();
    (names, params)
}

/// Whether the request holds `{now}` (a stream then keeps the run's start
/// in its checkpoint; others need not carry it).
pub(crate) fn uses_now(request: &crate::plan::RequestPlan) -> bool {
    request_texts(request)
        .into_iter()
        .flat_map(super::template::placeholders)
        .any(|slot| Meaning::of(slot.name) == Meaning::Now)
}

/// Every string of a planned request that may hold placeholders.
fn request_texts(request: &crate::plan::RequestPlan) -> Vec<&str> {
    let mut texts: Vec<&str> = vec![request.url.as_str()];
    for (_, value) in request.query.iter().chain(&request.headers) {
        texts.push(value);
    }
    if let Some(value) = &request.body {
        json_strings(value, &mut texts);
    }
    texts
}

/// Every string value in a JSON document (where body placeholders go).
pub(crate) fn json_strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(text) => out.push(text),
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

/// The problems of `text` that are only problems for a command that sends
/// requests: each `{env.NAME}` whose variable is not set. `status` and
/// `reset` do not need the run's environment; `validate`, `run`, `preview`
/// and `run --dry-run` report these.
pub(crate) fn missing_env(
    key: &str,
    text: &str,
    env: &[(String, String)],
) -> Vec<super::checks::Problem> {
    super::template::placeholders(text)
        .filter_map(|slot| match Meaning::of(slot.name) {
            Meaning::Env(var) if env_value(env, var).is_none() => Some((
                format!(
                    "`{{{}}}` in `{key}`: environment variable {var} is not set",
                    slot.name
                ),
                Some("export it, or load a .env file with --env-file".to_string()),
            )),
            _ => None,
        })
        .collect()
}

/// The partition value `text` names when it is one placeholder and
/// nothing else (`"{partition.id}"` in `primary_key` or `columns`).
pub(crate) fn partition_placeholder(text: &str) -> Option<&str> {
    let slot = super::template::placeholders(text).next()?;
    let whole = slot.at == 0 && slot.format.is_none() && text.len() == slot.name.len() + 2;
    match Meaning::of(slot.name) {
        Meaning::Partition(name) if whole => Some(name),
        _ => None,
    }
}

/// The environment variables `texts` name, with their values (those set).
pub(crate) fn env_used<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    env: &[(String, String)],
) -> Vec<(String, String)> {
    let mut used: Vec<(String, String)> = Vec::new();
    for text in texts {
        for slot in super::template::placeholders(text) {
            if let Meaning::Env(var) = Meaning::of(slot.name)
                && env_value(&used, var).is_none()
                && let Some(value) = env_value(env, var)
            {
                used.push((var.to_string(), value.to_string()));
            }
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::CursorType;

    fn check_with(text: &str, url: bool, mark: Option<(CursorType, bool)>) -> Vec<String> {
        let env = [("SITE".to_string(), "eu.example".to_string())];
        let secrets = ["app_key".to_string()].into();
        let job = Fillable {
            partition: &["partition"],
            mark,
            env: &env,
            secrets: &secrets,
            insecure: false,
            dates: false,
        };
        check("url", text, &job, url)
            .into_iter()
            .map(|(message, hint)| format!("{message} | {}", hint.unwrap_or_default()))
            .collect()
    }

    #[test]
    fn placeholders_the_job_cannot_fill_are_named() {
        let timestamp = Some((CursorType::Timestamp, true));
        let ok = "https://{env.SITE}/x/{partition}?a={{b}}&m={mark:epoch}&n={now:%Y}";
        assert!(check_with(ok, true, timestamp).is_empty());
        let unknown = check_with("https://x/{partition.id}/{bogus}", true, None);
        assert_eq!(unknown.len(), 2, "{unknown:?}");
        assert!(unknown[0].starts_with("unknown placeholder `{partition.id}` in `url`"));
        assert!(
            unknown[1].contains("{partition}, {now}, {env.NAME}"),
            "{unknown:?}"
        );
        let host = check_with("https://{partition}.x.example/", true, None);
        assert!(host[0].contains("scheme, host or port"), "{host:?}");
        assert!(check_with("{partition}.x.example", false, None).is_empty());
        assert!(check_with("https://x/{env.NOPE}", true, None).is_empty());
        let missing = missing_env(
            "url",
            "https://x/{env.NOPE}/{env.SITE}",
            &[("SITE".into(), "x".into())],
        );
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert!(
            missing[0]
                .0
                .contains("environment variable NOPE is not set")
        );
        let no_mark = check_with("https://x/?s={mark}", true, None);
        assert!(no_mark[0].contains("has no [incremental]"), "{no_mark:?}");
        let no_initial = check_with(
            "https://x/?s={mark}",
            true,
            Some((CursorType::Timestamp, false)),
        );
        assert!(no_initial[0].contains("no `initial`"), "{no_initial:?}");
        let integer = check_with(
            "https://x/?s={mark:epoch}",
            true,
            Some((CursorType::Integer, true)),
        );
        assert!(
            integer[0].contains("only a time value takes a format"),
            "{integer:?}"
        );
        assert!(
            check_with(
                "https://x/?s={mark}",
                true,
                Some((CursorType::Integer, true))
            )
            .is_empty()
        );
        let bad_format = check_with("https://x/?s={now:unix}", true, None);
        assert!(
            bad_format[0].contains("unknown format `unix`"),
            "{bad_format:?}"
        );
        let env_format = check_with("https://x/?s={env.SITE:epoch}", true, None);
        assert!(
            env_format[0].contains("only a time value"),
            "{env_format:?}"
        );
        let env = [("SITE".to_string(), "evil.example/x?".to_string())];
        let none = Default::default();
        let mut job = Fillable {
            partition: &[],
            mark: None,
            env: &env,
            secrets: &none,
            insecure: false,
            dates: false,
        };
        let bad_host = check("url", "https://{env.SITE}/v1", &job, true);
        assert!(
            bad_host[0].0.contains("more than a host name"),
            "{bad_host:?}"
        );
        assert!(check("url", "https://x/{env.SITE}", &job, true).is_empty());
        let secrets = ["k".to_string()].into();
        job.secrets = &secrets;
        assert!(check("headers.X", "{secret.k}", &job, false).is_empty());
        job.insecure = true;
        let plain_http = check("headers.X", "{secret.k}", &job, false);
        assert!(plain_http[0].0.contains("plain http"), "{plain_http:?}");
        let mark_host = check_with("https://{mark}.x/", true, timestamp);
        assert!(
            mark_host[0].contains("scheme, host or port"),
            "{mark_host:?}"
        );
    }

    #[test]
    fn names_have_meanings() {
        assert_eq!(Meaning::of("mark"), Meaning::Mark);
        assert_eq!(Meaning::of("now"), Meaning::Now);
        assert_eq!(Meaning::of("env.DD_SITE"), Meaning::Env("DD_SITE"));
        assert_eq!(
            Meaning::of("partition.start"),
            Meaning::Partition("partition.start")
        );
        assert_eq!(
            Meaning::of("partition.id"),
            Meaning::Partition("partition.id")
        );
        for unknown in ["env.", "env", "marks", "partition.", "bogus"] {
            assert_eq!(Meaning::of(unknown), Meaning::Unknown, "{unknown}");
        }
    }

    #[test]
    fn time_formats_write_one_instant_each_way() {
        let at = "2024-03-05T06:07:08+01:00";
        let write = |f: &str| TimeFormat::parse(f).unwrap().write(at).unwrap();
        assert_eq!(write("rfc3339"), "2024-03-05T05:07:08Z");
        assert_eq!(write("epoch"), "1709615228");
        assert_eq!(write("epoch_ms"), "1709615228000");
        assert_eq!(write("date"), "2024-03-05");
        assert_eq!(write("%Y%m%dT%H"), "20240305T05");
        let day = TimeFormat::Epoch.write("2024-01-01").unwrap();
        assert_eq!(day, "1704067200");
        assert!(TimeFormat::Epoch.write("yesterday").is_err());
        assert!(TimeFormat::parse("%Q").is_err());
        assert!(TimeFormat::parse("%#z").is_err(), "read-only item");
        assert!(TimeFormat::parse("%Y%n").is_err() && TimeFormat::parse("%t").is_err());
        assert!(TimeFormat::parse("").is_err());
        let unknown = TimeFormat::parse("unix").unwrap_err();
        assert!(unknown.contains("epoch_ms"), "{unknown}");
        assert_eq!(
            now_text("2024-01-01T00:00:00.5Z".parse().unwrap()),
            "2024-01-01T00:00:00Z"
        );
    }
}
