//! `apisync init NAME --url URL [--auth NAME]`: fetch the first page, detect
//! where the records are, how the API pages and which field identifies a
//! record, and write `jobs/NAME.toml` with a comment beside every guess.
//! Detection is pure (`detect`), so it is tested on bodies and headers alone.

mod detect;
mod error;
mod fetch;
#[cfg(test)]
mod tests;
mod write;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use url::Url;

pub use detect::{Finding, RecordsAt, pagination, primary_key, records_path};
pub use error::InitError;
pub use fetch::{AuthUse, FirstPage, MAX_BODY, first_page};
pub use write::{Detection, job_file};

/// What `init` wrote, and what it could not detect.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    pub detection: Detection,
}

/// Everything detected on `page`, fetched from `url`.
pub fn detect(page: &FirstPage, url: &Url) -> Detection {
    let records = records_path(&page.body);
    let pointer = records.value.as_ref().map_or("", |r| r.pointer.as_str());
    let link_next = matches!(
        crate::fetch::next_link(&page.headers, &page.url),
        Ok(Some(_))
    );
    let (pagination, has_more) = pagination(&page.body, link_next, url, pointer);
    let items = match records
        .value
        .as_ref()
        .and_then(|_| page.body.pointer(pointer))
    {
        Some(serde_json::Value::Array(items)) => items.as_slice(),
        _ => &[],
    };
    Detection {
        primary_key: primary_key(items),
        records,
        pagination,
        has_more,
    }
}

/// The path of job `name` in `jobs_dir`, if the name is a valid job name.
pub fn job_path(jobs_dir: &Path, name: &str) -> Result<PathBuf, InitError> {
    if !crate::definition::is_identifier(name) {
        return Err(InitError::BadName {
            name: name.to_string(),
            reason: "job names are [A-Za-z_][A-Za-z0-9_]* (they name the file and the table)",
        });
    }
    let path = jobs_dir.join(format!("{name}.toml"));
    if path.exists() {
        return Err(InitError::Exists { path });
    }
    Ok(path)
}

/// Fetch the first page, detect, and write the job file (never over an
/// existing one: the file is created with create_new, so a race loses too).
pub async fn init(
    client: &reqwest::Client,
    jobs_dir: &Path,
    name: &str,
    url: &Url,
    auth: Option<AuthUse<'_>>,
) -> Result<Written, InitError> {
    let path = job_path(jobs_dir, name)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(InitError::UserInfo {
            url: crate::plan::without_userinfo(url.as_str()),
        });
    }
    let auth_name = auth.as_ref().map(|a| a.name.to_string());
    let page = first_page(client, url, auth).await?;
    let detection = detect(&page, url);
    let text = job_file(name, url, auth_name.as_deref(), &detection);
    let write_error = |source| InitError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(jobs_dir).map_err(write_error)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::AlreadyExists => InitError::Exists { path: path.clone() },
            _ => write_error(err),
        })?;
    file.write_all(text.as_bytes()).map_err(write_error)?;
    Ok(Written { path, detection })
}
