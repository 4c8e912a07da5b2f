//! Small plans for unit tests of the run stage, made from TOML text by the
//! crate's one test builder (`crate::test_support`).

use crate::plan::{JobPlan, ProjectPlan};
use crate::test_support::TestProject;

/// A merge job `name` on `/data` keyed by `/id`, at an address nothing
/// listens on (unit tests of the run stage send nothing).
pub(crate) fn job(name: &str) -> JobPlan {
    let text = "[request]\nurl = \"http://127.0.0.1:9/items\"\n\
                [records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n\
                [output]\nmode = \"merge\"\n";
    let mut plan = TestProject::new().job(name, text).plan();
    let mut job = plan.jobs.pop().expect("the project has the one job");
    // Where the file would be in a project, not the temporary folder.
    job.file = format!("jobs/{name}.toml").into();
    job
}

/// A project with default settings and no jobs.
pub(crate) fn project() -> ProjectPlan {
    TestProject::new().plan()
}
