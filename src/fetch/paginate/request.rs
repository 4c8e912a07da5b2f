//! Building a stream's requests from the job and a position: the job URL
//! with partition values substituted, the job query (keys as written), the
//! incremental `since` and the pagination type's own parameters; or a
//! next URL followed exactly as the server gave it.

use serde_json::Value;
use url::Url;

use super::body::{empty, set_at};
use super::paging::mismatch;
use super::paging_of;
use crate::fetch::{NextRequest, PageRequest, StreamPosition};
use crate::plan::{JobPlan, ParamLocation, Partition};

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
}

impl RequestBase {
    pub(crate) fn new(job: &JobPlan, partition: &Partition) -> Result<Self, String> {
        let pinned = pinned_url(&job.request.url)?;
        let text = partition
            .substitute_url(&job.request.url)
            .map_err(|e| format!("the job URL cannot take the partition's values: {e} (hint: check request.url and the partition values)"))?;
        let mut start = Url::parse(&text).map_err(|e| {
            format!("the job URL {text:?} is not a valid URL after substitution: {e} (hint: check request.url and the partition values)")
        })?;
        // Encoding keeps values out of the origin; this is the proof.
        if start.origin() != pinned.origin() {
            return Err(format!(
                "the partition's values change the job URL's origin to {} (hint: keep placeholders out of the scheme, host and port)",
                start.origin().ascii_serialization()
            ));
        }
        if !job.request.query.is_empty() {
            let mut pairs = start.query_pairs_mut();
            for (key, value) in &job.request.query {
                pairs.append_pair(key, &partition.substitute(value));
            }
        }
        let headers = substitute_headers(&job.request.headers, partition)?;
        let body = job
            .request
            .body
            .as_ref()
            .map(|b| substitute_json(b, partition));
        Ok(RequestBase {
            method: job.request.method,
            start,
            pinned,
            headers,
            body,
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
            .map(|(inc, since)| (inc.param.as_str(), inc.param_in, since));
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

/// Header values with partition values in, sent as they are: a value that
/// is not a valid header value (a line break, a control character) is an
/// error, never sent mangled.
fn substitute_headers(
    headers: &[(String, String)],
    partition: &Partition,
) -> Result<Vec<(String, String)>, String> {
    headers
        .iter()
        .map(|(name, template)| {
            let value = partition.substitute(template);
            // HTTP drops a header value's surrounding white space, so "1"
            // and " 1" would ask for the same thing as two partitions.
            let padded = partition.vars.iter().any(|(n, v)| {
                v.trim_matches([' ', '\t']) != v && template.contains(&format!("{{{n}}}"))
            });
            match http::HeaderValue::from_str(&value) {
                Ok(_) if padded => Err(format!(
                    "header {name} would carry partition {:?} with white space around it, which HTTP drops, so it would ask for what another partition asks (hint: trim the parent's values, or put the placeholder in the URL path or query)",
                    partition.key
                )),
                Ok(_) => Ok((name.clone(), value)),
                Err(_) => Err(format!(
                    "header {name} is not a valid header value with partition {:?} (hint: partition values in headers must be printable text without line breaks)",
                    partition.key
                )),
            }
        })
        .collect()
}

/// `{partition...}` substituted in every string of a JSON body.
fn substitute_json(value: &Value, partition: &Partition) -> Value {
    match value {
        Value::String(s) => Value::String(partition.substitute(s)),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| substitute_json(v, partition))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute_json(v, partition)))
                .collect(),
        ),
        other => other.clone(),
    }
}
