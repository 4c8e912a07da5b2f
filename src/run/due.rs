//! `run --due`: a job with a `schedule` (5-field cron, UTC) is due when one
//! of its scheduled times has passed since its last successful run began, or
//! when it never succeeded; a job without a schedule is always due. The
//! clock is a parameter, so tests never wait for real time.

use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use croner::Cron;

/// The first scheduled time after the last successful start (None when the
/// job has no schedule). At or before `now` means due.
pub fn next_due(
    schedule: Option<&str>,
    last_success_start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let cron = Cron::from_str(schedule?).ok()?;
    match last_success_start {
        None => Some(now),
        Some(start) => cron.find_next_occurrence(&start, false).ok(),
    }
}

pub fn is_due(
    schedule: Option<&str>,
    last_success_start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    match schedule {
        None => true,
        Some(_) => next_due(schedule, last_success_start, now).is_none_or(|due| due <= now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn due_once_a_scheduled_time_passed_since_the_last_successful_start() {
        let every_15 = Some("*/15 * * * *");
        let last = Some(at("2026-01-01T10:00:00Z"));
        assert!(!is_due(every_15, last, at("2026-01-01T10:14:59Z")));
        assert!(is_due(every_15, last, at("2026-01-01T10:15:00Z")));
        assert!(is_due(every_15, last, at("2026-01-02T00:00:00Z")));
        assert_eq!(
            next_due(every_15, last, at("2026-01-01T10:01:00Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
    }

    #[test]
    fn never_run_and_unscheduled_jobs_are_due() {
        assert!(is_due(Some("0 3 * * *"), None, at("2026-01-01T00:00:00Z")));
        assert!(is_due(
            None,
            Some(at("2026-01-01T00:00:00Z")),
            at("2026-01-01T00:00:01Z")
        ));
    }

    #[test]
    fn a_daily_schedule_is_not_due_twice_a_day() {
        let daily = Some("0 3 * * *");
        let last = Some(at("2026-01-01T03:00:05Z"));
        assert!(!is_due(daily, last, at("2026-01-01T23:59:00Z")));
        assert!(is_due(daily, last, at("2026-01-02T03:00:00Z")));
    }
}
