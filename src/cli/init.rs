//! `apisync init`: compose the project's auth and HTTP client with the
//! detection in `crate::init`, print what was written and what was not
//! detected, and check that the new file validates.

use std::sync::Arc;

use super::args::{GlobalArgs, InitArgs};
use super::{Exit, project};
use crate::auth::TokenStore;
use crate::fetch::{HttpClient, HttpOptions};
use crate::init::{AuthUse, InitError};
use crate::plan::PaginationKind;
use crate::token_store::DbTokenStore;

pub async fn init(global: &GlobalArgs, args: &InitArgs) -> Exit {
    let plan = match project::load(global) {
        Ok(plan) => plan,
        Err(exit) => return exit,
    };
    let written = match write(&plan, args).await {
        Ok(written) => written,
        Err(err) => {
            eprintln!("error: {err}");
            return match err {
                InitError::Exists { .. }
                | InitError::BadName { .. }
                | InitError::UnknownAuth { .. }
                | InitError::Refused { .. }
                | InitError::UserInfo { .. } => Exit::Usage,
                _ => Exit::Failed,
            };
        }
    };
    let found = &written.detection;
    let kind = found
        .pagination
        .value
        .as_ref()
        .map_or("none", PaginationKind::type_name);
    let records = found
        .records
        .value
        .as_ref()
        .map_or("?", |r| r.pointer.as_str());
    println!(
        "wrote {}: pagination {kind}, records at {records:?}, primary key {}",
        written.path.display(),
        found.primary_key.value.as_deref().unwrap_or("none"),
    );
    for missing in found.missing() {
        eprintln!("warning: not detected: {missing}");
    }
    // The file must load like any other; if it does not, say so now.
    match project::load(global) {
        Ok(_) => Exit::Ok,
        Err(exit) => {
            eprintln!(
                "error: the written file does not validate (edit it, or report this as a bug in init)"
            );
            exit
        }
    }
}

async fn write(
    plan: &crate::plan::ProjectPlan,
    args: &InitArgs,
) -> Result<crate::init::Written, InitError> {
    let setup = |message: String| InitError::Fetch {
        url: args.url.to_string(),
        message,
    };
    let http = HttpClient::new(&HttpOptions {
        concurrency: 1,
        user_agent: format!("apisync/{}", env!("CARGO_PKG_VERSION")),
        hosts: plan.hosts.clone(),
    })
    .map_err(|e| setup(e.to_string()))?;
    let client = http.token_client();
    // Check the name before any token request or database file.
    crate::init::job_path(&plan.settings.jobs_dir, &args.name)?;
    let auth = match args.auth.as_deref() {
        None => None,
        Some(name) => {
            let auth_plan = plan.auths.get(name).ok_or_else(|| InitError::UnknownAuth {
                name: name.to_string(),
            })?;
            // The run's token store: a rotated refresh token must be kept.
            let store: Arc<dyn TokenStore> =
                Arc::new(DbTokenStore::open(&plan.settings.database).map_err(|e| {
                    InitError::Auth {
                        name: name.to_string(),
                        message: e.to_string(),
                    }
                })?);
            Some(AuthUse {
                name,
                plan: auth_plan,
                store,
            })
        }
    };
    crate::init::init(
        &client,
        &plan.settings.jobs_dir,
        &args.name,
        &args.url,
        auth,
    )
    .await
}
