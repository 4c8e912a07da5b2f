//! Which jobs a command runs: by name, by tag, or all.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::due::{is_due, next_due};
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

/// Split `jobs` into those due at `now` and those not due (with their next
/// due time), given when each job's last successful run started (RFC 3339;
/// absent: it never succeeded, so it is due). See [`super::is_due`].
pub fn select_due(
    jobs: Vec<JobPlan>,
    last_success_starts: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> (Vec<JobPlan>, Vec<(JobPlan, DateTime<Utc>)>) {
    let mut due = Vec::new();
    let mut later = Vec::new();
    for job in jobs {
        let last = last_success_starts
            .get(&job.name)
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .map(|t| t.with_timezone(&Utc));
        match next_due(job.schedule.as_deref(), last, now) {
            Some(at) if !is_due(job.schedule.as_deref(), last, now) => later.push((job, at)),
            _ => due.push(job),
        }
    }
    (due, later)
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
    fn due_selection_follows_each_schedule_at_the_given_clock() {
        use crate::run::test_support::job;
        let scheduled = |name: &str, schedule: &str| {
            let mut j = job(name);
            j.schedule = Some(schedule.into());
            j
        };
        let jobs = vec![
            scheduled("quarterly", "*/15 * * * *"),
            scheduled("daily", "0 3 * * *"),
            scheduled("never_ran", "0 3 * * *"),
            job("unscheduled"),
        ];
        let last: BTreeMap<String, String> = [
            ("quarterly", "2026-01-01T10:00:00.000Z"),
            ("daily", "2026-01-01T03:00:05.000Z"),
            ("unscheduled", "2026-01-01T10:19:00.000Z"),
        ]
        .into_iter()
        .map(|(j, t)| (j.to_string(), t.to_string()))
        .collect();
        let now = DateTime::parse_from_rfc3339("2026-01-01T10:20:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (due, later) = select_due(jobs.clone(), &last, now);
        let names = |jobs: &[JobPlan]| jobs.iter().map(|j| j.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&due), ["quarterly", "never_ran", "unscheduled"]);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].0.name, "daily");
        assert_eq!(
            later[0]
                .1
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "2026-01-02T03:00:00Z"
        );
        // Five minutes earlier the quarter-hour job is not due yet.
        let earlier = now - chrono::Duration::minutes(6);
        let (due, _) = select_due(jobs, &last, earlier);
        assert_eq!(names(&due), ["never_ran", "unscheduled"]);
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
