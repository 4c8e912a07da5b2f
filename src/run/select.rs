//! Which jobs a command runs: by name, by tag, or all.

use crate::plan::{JobPlan, ProjectPlan};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SelectError {
    #[error("no job named \"{name}\"{hint} (hint: `apisync status` lists the jobs)")]
    UnknownJob { name: String, hint: String },
    #[error("no job matches the selection (jobs: {available})")]
    NothingSelected { available: String },
}

/// Jobs named in `names` (all when empty), then filtered by `tags` (any
/// tag matches). Sorted by name; order of execution is the scheduler's.
pub fn select_jobs(
    plan: &ProjectPlan,
    names: &[String],
    tags: &[String],
) -> Result<Vec<JobPlan>, SelectError> {
    for name in names {
        if !plan.jobs.iter().any(|j| &j.name == name) {
            let hint = closest(name, plan.jobs.iter().map(|j| j.name.as_str()))
                .map(|c| format!("; did you mean \"{c}\"?"))
                .unwrap_or_default();
            return Err(SelectError::UnknownJob {
                name: name.clone(),
                hint,
            });
        }
    }
    let chosen: Vec<JobPlan> = plan
        .jobs
        .iter()
        .filter(|j| names.is_empty() || names.contains(&j.name))
        .filter(|j| tags.is_empty() || j.tags.iter().any(|t| tags.contains(t)))
        .cloned()
        .collect();
    if chosen.is_empty() && (!names.is_empty() || !tags.is_empty()) {
        let available = plan
            .jobs
            .iter()
            .map(|j| j.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(SelectError::NothingSelected { available });
    }
    Ok(chosen)
}

/// The candidate closest to `name` by edit distance, if it is close.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_name_suggests_the_closest_job() {
        let mut plan = crate::run::test_support::project();
        plan.jobs = vec![
            crate::run::test_support::job("orders"),
            crate::run::test_support::job("customers"),
        ];
        let err = select_jobs(&plan, &["ordrs".into()], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no job named \"ordrs\"; did you mean \"orders\"? (hint: `apisync status` lists the jobs)"
        );
    }

    #[test]
    fn tags_filter_the_selection() {
        let mut plan = crate::run::test_support::project();
        let mut tagged = crate::run::test_support::job("orders");
        tagged.tags = vec!["hourly".into()];
        plan.jobs = vec![tagged, crate::run::test_support::job("customers")];
        let chosen = select_jobs(&plan, &[], &["hourly".into()]).unwrap();
        assert_eq!(
            chosen.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
            ["orders"]
        );
    }
}
