//! Pushing to a Prometheus Pushgateway, the convention for batch jobs:
//! `PUT <url>/metrics/job/apisync/apisync_job/<name>` per job. PUT replaces
//! the group, and a group per job means a run of one job (`run --due`,
//! `backfill`) replaces that job's figures and leaves the others alone. A
//! shard of a sharded run pushes to `.../apisync_job/<name>/shard/<index>`,
//! so the pods of one Indexed Job never overwrite each other's figures.

use std::time::Duration;

use base64::Engine as _;
use url::Url;

use super::MetricsError;
use super::render::JOB_LABEL;

/// A push waits at most this long: metrics never hold up the end of a run.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The group URL of `job` under the Pushgateway at `base`. A name that is
/// not plain URL-safe text goes base64url-encoded (`label@base64/value`),
/// the Pushgateway's way to carry `/` and other bytes in a path. `shard`
/// (sharded runs) adds a `shard` grouping label.
pub fn group_url(base: &Url, job: &str, shard: Option<u32>) -> Result<Url, MetricsError> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    let plain = !job.is_empty()
        && job
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    let (label, value) = if plain {
        (JOB_LABEL.to_string(), job.to_string())
    } else {
        (
            format!("{JOB_LABEL}@base64"),
            base64::engine::general_purpose::URL_SAFE.encode(job),
        )
    };
    let shown = shown(base);
    let mut segments = url.path_segments_mut().map_err(|()| MetricsError::BadUrl {
        url: shown,
        reason: "it cannot have a path (hint: give http://HOST:9091)".into(),
    })?;
    segments
        .pop_if_empty()
        .extend(["metrics", "job", "apisync", &label, &value]);
    if let Some(index) = shard {
        segments.extend(["shard", &index.to_string()]);
    }
    drop(segments);
    Ok(url)
}

/// PUT `body` (the text format) to `url` with a plain client and a timeout.
/// A user and password in the URL are sent as basic auth by reqwest and
/// never shown in an error.
pub async fn push(client: &reqwest::Client, url: &Url, body: String) -> Result<(), MetricsError> {
    let fail = |message: String| MetricsError::Push {
        url: shown(url),
        message,
    };
    let response = client
        .put(url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .timeout(PUSH_TIMEOUT)
        .body(body)
        .send()
        .await
        .map_err(|err| fail(crate::fetch::describe(err)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let text: String = text.trim().chars().take(200).collect();
    Err(fail(format!("the Pushgateway answered {status}: {text}")))
}

/// The URL without user or password, for messages.
fn shown(url: &Url) -> String {
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_urls_follow_the_pushgateway_path() {
        let base = Url::parse("http://pg.example:9091").unwrap();
        assert_eq!(
            group_url(&base, "orders", None).unwrap().as_str(),
            "http://pg.example:9091/metrics/job/apisync/apisync_job/orders"
        );
        let prefixed = Url::parse("http://pg.example/gateway/").unwrap();
        assert_eq!(
            group_url(&prefixed, "a/b", None).unwrap().as_str(),
            "http://pg.example/gateway/metrics/job/apisync/apisync_job@base64/YS9i"
        );
        assert_eq!(
            group_url(&base, "orders", Some(3)).unwrap().as_str(),
            "http://pg.example:9091/metrics/job/apisync/apisync_job/orders/shard/3"
        );
    }

    #[test]
    fn messages_never_show_the_password() {
        let url = Url::parse("http://user:hunter2@pg.example:9091/").unwrap();
        assert!(!shown(&url).contains("hunter2"));
        assert!(!shown(&url).contains("user"));
    }
}
