//! Small hand-made plans for unit tests of the run stage.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::plan::*;

pub(crate) fn job(name: &str) -> JobPlan {
    JobPlan {
        name: name.to_string(),
        file: format!("jobs/{name}.toml").into(),
        description: None,
        auth: None,
        schedule: None,
        depends_on: Vec::new(),
        tags: Vec::new(),
        request: RequestPlan {
            url: "http://127.0.0.1:9/items".into(),
            method: HttpMethod::Get,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(30),
        },
        pagination: PaginationPlan {
            kind: PaginationKind::None,
            has_more_path: None,
            max_pages: 0,
            allow_cross_origin: false,
        },
        records: RecordsPlan {
            path: "/data".into(),
            primary_key: vec!["/id".into()],
            error_path: None,
            error_retry: false,
            max_page_bytes: 64 << 20,
        },
        incremental: None,
        partitions: None,
        output: OutputPlan {
            table: name.to_string(),
            mode: WriteMode::Merge,
            columns: Vec::new(),
        },
        retry: RetryPlan::default(),
    }
}

pub(crate) fn project() -> ProjectPlan {
    ProjectPlan {
        config_file: None,
        settings: Settings {
            database: crate::plan::Database::sqlite("apisync.db"),
            jobs_dir: "jobs".into(),
            concurrency: 8,
            job_concurrency: 4,
        },
        auths: BTreeMap::new(),
        hosts: BTreeMap::new(),
        jobs: Vec::new(),
    }
}
