//! The streams of a job: one for an unpartitioned job, else one per
//! partition value, per row value of a parent job's table, or per date slice.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use super::{RunEnv, RunError};
use crate::plan::{JobPlan, Partition, PartitionsPlan};

pub(crate) async fn partitions_of(env: &RunEnv, job: &JobPlan) -> Result<Vec<Partition>, RunError> {
    match &job.partitions {
        None => Ok(vec![Partition::whole()]),
        Some(PartitionsPlan::Values(values)) => {
            Ok(values.iter().map(|v| value_partition(v)).collect())
        }
        Some(PartitionsPlan::FromJob { job: parent, field }) => {
            let table = env
                .parent_tables
                .get(parent)
                .cloned()
                .unwrap_or_else(|| parent.clone());
            let field = field.clone();
            let values = env
                .writer
                .call(move |store| store.distinct_values(&table, &field))
                .await??;
            Ok(values.iter().map(|v| value_partition(v)).collect())
        }
        Some(PartitionsPlan::Dates { from, to, step }) => date_slices(from, to, *step, Utc::now())
            .map_err(|message| RunError::Partitions {
                job: job.name.clone(),
                message,
            }),
    }
}

pub(crate) fn value_partition(value: &str) -> Partition {
    Partition {
        key: value.to_string(),
        vars: vec![("partition".into(), value.to_string())],
    }
}

/// A bound of a date range: a plain date keeps the slices as dates, an RFC
/// 3339 time makes them timestamps.
fn parse_bound(text: &str, now: DateTime<Utc>) -> Result<(DateTime<Utc>, bool), String> {
    if text == "now" {
        return Ok((now, false));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = date.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        return start
            .map(|t| (t, true))
            .ok_or_else(|| format!("bad date {text:?}"));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| (t.with_timezone(&Utc), false))
        .map_err(|_| {
            format!("{text:?} is neither a date (YYYY-MM-DD), an RFC 3339 time nor \"now\"")
        })
}

/// Half-open slices `[start, end)` of `step` from `from` to `to`; the last
/// one is cut at `to`.
pub fn date_slices(
    from: &str,
    to: &str,
    step: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Partition>, String> {
    let (start, from_is_date) = parse_bound(from, now)?;
    let (end, to_is_date) = parse_bound(to, now)?;
    let step = chrono::Duration::from_std(step).map_err(|_| "the step is too large".to_string())?;
    if step <= chrono::Duration::zero() {
        return Err("the step must be longer than zero".into());
    }
    let whole_days = step.num_seconds() % 86_400 == 0;
    let as_dates = from_is_date && (to_is_date || to == "now") && whole_days;
    // Daily slices up to "now" include today, whole: its slice ends tomorrow.
    let end = if as_dates && to == "now" {
        let tomorrow = now
            .date_naive()
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0));
        tomorrow.map(|t| t.and_utc()).unwrap_or(end)
    } else {
        end
    };
    let format = |t: DateTime<Utc>| {
        if as_dates {
            t.format("%Y-%m-%d").to_string()
        } else {
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        }
    };
    let mut slices = Vec::new();
    let mut cursor = start;
    while cursor < end {
        let next = (cursor + step).min(end);
        let (a, b) = (format(cursor), format(next));
        slices.push(Partition {
            key: format!("{a}..{b}"),
            vars: vec![("partition.start".into(), a), ("partition.end".into(), b)],
        });
        cursor = next;
    }
    Ok(slices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_slices_are_half_open_and_cover_the_range() {
        let now = Utc::now();
        let slices =
            date_slices("2024-01-01", "2024-01-04", Duration::from_secs(86_400), now).unwrap();
        let keys: Vec<_> = slices.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "2024-01-01..2024-01-02",
                "2024-01-02..2024-01-03",
                "2024-01-03..2024-01-04"
            ]
        );
        assert_eq!(
            slices[0].substitute("{partition.start}/{partition.end}"),
            "2024-01-01/2024-01-02"
        );
    }

    #[test]
    fn a_step_that_does_not_divide_the_range_cuts_the_last_slice() {
        let now = Utc::now();
        let slices = date_slices(
            "2024-01-01T00:00:00Z",
            "2024-01-01T05:00:00Z",
            Duration::from_secs(7_200),
            now,
        )
        .unwrap();
        assert_eq!(slices.len(), 3);
        assert_eq!(slices[2].key, "2024-01-01T04:00:00Z..2024-01-01T05:00:00Z");
    }

    #[test]
    fn a_bad_bound_is_an_error_not_a_panic() {
        let err = date_slices("yesterday", "now", Duration::from_secs(60), Utc::now()).unwrap_err();
        assert!(err.contains("yesterday"), "{err}");
    }
}
