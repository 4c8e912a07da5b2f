//! Building a stream's requests from the job and a position: the job URL
//! with partition values substituted, the job query (keys as written), the
//! incremental `since` and the pagination type's own parameters; or a
//! next URL followed exactly as the server gave it.

use serde_json::Value;
use url::Url;

use super::body::{empty, set_at};
use super::paging::mismatch;
use super::paging_of;
use crate::fetch::{NextRequest, PageRequest, SecretParts, StreamPosition};
use crate::plan::{JobPlan, ParamLocation, Partition, Values};

/// The partition-substituted parts of the job's request.
#[derive(Debug, Clone)]
pub(crate) struct RequestBase {
    method: crate::plan::HttpMethod,
    /// The job URL with the job query appended.
    start: Url,
    /// The job URL template as written (see `pinned_url`).
    pinned: Url,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    /// The strings that hold a `{secret.*}`, for the HTTP layer.
    secrets: SecretParts,
}

impl RequestBase {
    /// The job's request for one stream: its placeholders take the
    /// partition's values, the environment's, and the mark and `{now}` the
    /// stream started with (both fixed for the stream's life, so they are
    /// filled once here, not per page).
    pub(crate) fn new(
        job: &JobPlan,
        partition: &Partition,
        position: &StreamPosition,
    ) -> Result<Self, String> {
        let values = Values {
            partition,
            env: &job.request.env,
            mark: position.since.as_deref(),
            mark_is_time: job
                .incremental
                .as_ref()
                .is_some_and(|i| i.cursor_type == crate::plan::CursorType::Timestamp),
            now: position.now.as_deref(),
            window: position
                .window
                .as_ref()
                .map(|w| (w.start.as_str(), w.end.as_str())),
        };
        let pinned = values
            .pinned_url(&job.request.url)
            .and_then(|text| pinned_url(&text))?;
        let text = values
            .url(&job.request.url)
            .map_err(|e| format!("the job URL cannot take the stream's values: {e} (hint: check request.url and the partition values)"))?;
        let mut start = Url::parse(&text).map_err(|e| {
            format!("the job URL {text:?} is not a valid URL after substitution: {e} (hint: check request.url and the partition values)")
        })?;
        // Encoding keeps values out of the origin; this is the proof.
        if start.origin() != pinned.origin() {
            return Err(format!(
                "the stream's values change the job URL's origin to {} (hint: keep placeholders out of the scheme, host and port)",
                start.origin().ascii_serialization()
            ));
        }
        let mut secrets = SecretParts::default();
        if !job.request.query.is_empty() {
            let mut pairs = start.query_pairs_mut();
            for (key, value) in &job.request.query {
                let parts = values
                    .parts(value, |_| {})
                    .map_err(|e| format!("query parameter {key}: {e}"))?;
                match parts.into_plain() {
                    Ok(value) => {
                        pairs.append_pair(key, &value);
                    }
                    Err(secret) => secrets.query.push((key.clone(), secret)),
                }
            }
        }
        let headers = substitute_headers(&job.request.headers, &values, &mut secrets)?;
        let body = match &job.request.body {
            Some(body) => {
                let mut pointer = String::new();
                Some(substitute_json(
                    body,
                    &values,
                    &mut pointer,
                    &mut secrets.body,
                )?)
            }
            None => None,
        };
        Ok(RequestBase {
            method: job.request.method,
            start,
            pinned,
            headers,
            body,
            secrets,
        })
    }

    /// The job's own first URL.
    pub(crate) fn start_url(&self) -> &Url {
        &self.start
    }

    /// The URL whose origin alone sees the credential: the job's URL
    /// template, placeholders not substituted.
    pub(crate) fn pinned_url(&self) -> &Url {
        &self.pinned
    }

    /// The request for `position`.
    pub(crate) fn build(
        &self,
        job: &JobPlan,
        position: &StreamPosition,
    ) -> Result<PageRequest, String> {
        let mut body = self.body.clone();
        let since = job
            .incremental
            .as_ref()
            .zip(position.since.as_deref())
            .and_then(|(inc, since)| Some((inc.param.as_deref()?, inc.param_in, since)));
        if let Some((param, ParamLocation::Body, since)) = since {
            set_at(body.get_or_insert_with(empty), param, Value::from(since))?;
        }
        let url = match &position.next {
            NextRequest::Url { url } => Url::parse(url)
                .map_err(|e| format!("the saved next URL {url:?} is not valid: {e}"))?,
            next => {
                let mut url = self.start.clone();
                if let Some((param, ParamLocation::Query, since)) = since {
                    url.query_pairs_mut().append_pair(param, since);
                }
                let paging = paging_of(&job.pagination.kind);
                if *next != NextRequest::Start && !paging.resumes_at(next) {
                    return Err(mismatch(&job.pagination.kind, next));
                }
                paging.add_params(next, &mut url, &mut body)?;
                url
            }
        };
        Ok(PageRequest {
            method: self.method,
            url,
            headers: self.headers.clone(),
            body,
            secrets: self.secrets.clone(),
        })
    }
}

/// The job URL template parsed as written: placeholders stay text (the
/// parser encodes their braces), so the origin is the template's own.
fn pinned_url(template: &str) -> Result<Url, String> {
    Url::parse(template).map_err(|e| {
        format!("the job URL {template:?} is not a valid URL: {e} (hint: check request.url)")
    })
}

/// Header values with placeholders filled, sent as they are: a value that
/// is not a valid header value (a line break, a control character) is an
/// error, never sent mangled. A header holding a secret goes to `secrets`.
fn substitute_headers(
    headers: &[(String, String)],
    values: &Values<'_>,
    secrets: &mut SecretParts,
) -> Result<Vec<(String, String)>, String> {
    let mut plain = Vec::new();
    for (name, template) in headers {
        // HTTP drops a header value's surrounding white space, so "1"
        // and " 1" would ask for the same thing as two partitions.
        let mut padded = false;
        let value = values
            .parts(template, |text| {
                padded |= text.trim_matches([' ', '\t']) != text;
            })
            .map_err(|e| format!("header {name}: {e}"))?;
        match http::HeaderValue::from_str(&value.shape("secret")) {
            Ok(_) if padded => {
                return Err(format!(
                    "header {name} would carry partition {:?} with white space around it, which HTTP drops, so it would ask for what another partition asks (hint: trim the parent's values, or put the placeholder in the URL path or query)",
                    values.partition.key
                ));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                    "header {name} is not a valid header value with its placeholders filled{} (hint: values in headers must be printable text without line breaks)",
                    match values.partition.key.as_str() {
                        "" => String::new(),
                        key => format!(" for partition {key:?}"),
                    }
                ));
            }
        }
        match value.into_plain() {
            Ok(value) => plain.push((name.clone(), value)),
            Err(secret) => secrets.headers.push((name.clone(), secret)),
        }
    }
    Ok(plain)
}

/// Placeholders filled in every string of a JSON body; a string holding a
/// secret is left empty here and listed in `secret` by its pointer (`at`
/// is the pointer of `value`).
fn substitute_json(
    value: &Value,
    values: &Values<'_>,
    at: &mut String,
    secret: &mut Vec<(String, crate::plan::SecretText)>,
) -> Result<Value, String> {
    fn child(
        key: &str,
        value: &Value,
        values: &Values<'_>,
        at: &mut String,
        secret: &mut Vec<(String, crate::plan::SecretText)>,
    ) -> Result<Value, String> {
        let len = at.len();
        at.push('/');
        at.push_str(&key.replace('~', "~0").replace('/', "~1"));
        let filled = substitute_json(value, values, at, secret);
        at.truncate(len);
        filled
    }
    Ok(match value {
        Value::String(s) => {
            let parts = values
                .parts(s, |_| {})
                .map_err(|e| format!("request body: {e}"))?;
            match parts.into_plain() {
                Ok(text) => Value::String(text),
                Err(text) => {
                    secret.push((at.clone(), text));
                    Value::String(String::new())
                }
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| child(&i.to_string(), v, values, at, secret))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), child(k, v, values, at, secret)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}
