//! The one way unit tests make plans: from TOML text, through the same
//! loader and planner users go through, so a test's plan can never drift
//! from what a job file would give.
//!
//! Convention for tests in this crate (see docs/architecture.md): a
//! module's unit tests live in a sibling `tests.rs` (`x.rs` + `x/tests.rs`,
//! or `x/mod.rs` + `x/tests.rs`) once they pass a screenful; behaviour
//! across modules is tested in `tests/` against servers started on
//! 127.0.0.1 and real database files.

use crate::plan::{
    Diagnostics, JobPlan, Loaded, ProjectPlan, SettingsOverrides, load_project_with_env,
};

/// A project written into a temporary folder: `apisync.toml` plus
/// `jobs/<name>.toml` files, loaded with an explicit environment.
pub(crate) struct TestProject {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    overrides: SettingsOverrides,
}

impl TestProject {
    /// An empty project: no settings, no jobs.
    pub(crate) fn new() -> TestProject {
        let dir = tempfile::tempdir().expect("a temporary folder for the test project");
        std::fs::create_dir(dir.path().join("jobs")).expect("the jobs folder");
        std::fs::write(dir.path().join("apisync.toml"), "").expect("an empty apisync.toml");
        TestProject {
            dir,
            env: Vec::new(),
            overrides: SettingsOverrides::default(),
        }
    }

    /// The text of `apisync.toml`.
    pub(crate) fn config(self, text: &str) -> TestProject {
        std::fs::write(self.dir.path().join("apisync.toml"), text).expect("apisync.toml");
        self
    }

    /// A job file `jobs/<name>.toml`.
    pub(crate) fn job(self, name: &str, text: &str) -> TestProject {
        let path = self.dir.path().join("jobs").join(format!("{name}.toml"));
        std::fs::write(path, text).expect("a job file");
        self
    }

    /// One variable of the environment the project is loaded with (the
    /// process's own environment is never read).
    pub(crate) fn env(mut self, name: &str, value: &str) -> TestProject {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Command-line overrides of the settings.
    pub(crate) fn overrides(mut self, overrides: SettingsOverrides) -> TestProject {
        self.overrides = overrides;
        self
    }

    /// The folder the project lives in (relative paths start here).
    pub(crate) fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Load and plan, returning every problem as the user would see it.
    pub(crate) fn load(&self) -> Result<Loaded, Diagnostics> {
        load_project_with_env(
            Some(&self.dir.path().join("apisync.toml")),
            &self.overrides,
            &self.env,
            &["APISYNC_LOG_FORMAT"],
        )
    }

    /// The plan; panics with the rendered problems when there are any.
    pub(crate) fn plan(&self) -> ProjectPlan {
        match self.load() {
            Ok(loaded) => loaded.plan,
            Err(problems) => panic!("the test project does not plan:\n{problems}"),
        }
    }
}

/// The plan of one job file, alone in a project with default settings.
pub(crate) fn job_plan(job_toml: &str) -> JobPlan {
    let mut plan = TestProject::new().job("job", job_toml).plan();
    plan.jobs.pop().expect("the project has the one job")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_file_becomes_its_plan() {
        let job = job_plan("[request]\nurl = \"https://api.example.com/v1/items\"\n");
        assert_eq!(job.name, "job");
        assert_eq!(job.request.url, "https://api.example.com/v1/items");
    }

    #[test]
    fn problems_are_reported_not_swallowed() {
        let project = TestProject::new().job("bad", "[request]\nurl = \"htp:/x\"\n");
        let problems = project.load().expect_err("a bad URL does not plan");
        assert!(problems.to_string().contains("htp:/x"), "{problems}");
    }
}
