//! `validate` output for whole projects: a broken fixture (snapshot of every
//! rendered problem), a good one, and every job file shipped in the repository.

use std::path::{Path, PathBuf};

use apisync::plan::{SettingsOverrides, WriteMode, load_project_with_env};

/// Fixture paths are relative to the package root (cargo's working
/// directory for tests), so rendered paths are stable on every machine.
fn fixture(name: &str) -> PathBuf {
    Path::new("tests/fixtures/defs")
        .join(name)
        .join("apisync.toml")
}

#[test]
fn broken_project_reports_every_problem_of_every_file() {
    let result = load_project_with_env(
        Some(&fixture("broken")),
        &SettingsOverrides::default(),
        &[],
        &[],
    );
    let rendered = result.expect_err("the fixture is broken").to_string();
    assert!(
        !rendered.contains("do-not-echo-me"),
        "a plain secret leaked"
    );
    insta::assert_snapshot!(rendered);
}

#[test]
fn good_project_plans_with_defaults() {
    let loaded = load_project_with_env(
        Some(&fixture("good")),
        &SettingsOverrides::default(),
        &[],
        &[],
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let job = &loaded.plan.jobs[0];
    assert_eq!(job.name, "orders");
    assert_eq!(job.output.mode, WriteMode::Merge);
    assert_eq!(job.auth.as_deref(), Some("acme"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

/// Every job file of the repository plans cleanly, so the shipped jobs
/// never drift from the format. The examples need their project file and
/// environment (`{env.DD_SITE}`, `[secrets]`): `tests/examples_and_deploy.rs`
/// plans every one of them with those.
#[test]
fn repository_job_files_validate() {
    for dir in ["jobs"] {
        if !Path::new(dir).is_dir() {
            continue;
        }
        let overrides = SettingsOverrides {
            jobs_dir: Some(dir.into()),
            ..Default::default()
        };
        let loaded = load_project_with_env(None, &overrides, &[], &[])
            .unwrap_or_else(|d| panic!("{dir}:\n{d}"));
        let files = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml"))
            })
            .count();
        assert_eq!(
            loaded.plan.jobs.len(),
            files,
            "every file of {dir} became a job"
        );
    }
}

/// reach.md section 1: every placeholder a job cannot fill, every format
/// that does not apply, and `param` beside `{mark}`, each at its line and
/// column. `HOME` is given, so `{env.HOME:epoch}` is refused for its
/// format, not for being unset.
#[test]
fn placeholder_problems_are_located_and_explained() {
    let env = [("HOME".to_string(), "/root".to_string())];
    let result = load_project_with_env(
        Some(&fixture("placeholders")),
        &SettingsOverrides::default(),
        &env,
        &[],
    );
    let rendered = result.expect_err("the fixture is broken").to_string();
    insta::assert_snapshot!(rendered);
}
