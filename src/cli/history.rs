//! `apisync status JOB`: the job's recent runs at a glance. Each run's
//! records and seconds get a bar scaled to the largest of the runs shown,
//! so a slowdown or a drop to zero is seen rather than read; a sparkline
//! above the table shows the same, oldest to newest.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::store::RunRecord;

/// Widest bar, in characters.
const BAR_WIDTH: usize = 16;
/// Bars in eighths of a character.
const EIGHTHS: [char; 8] = ['▏', '▎', '▍', '▌', '▋', '▊', '▉', '█'];
/// Sparkline levels, lowest first.
const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The history of `job`, its runs given newest first.
pub fn render(job: &str, runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return format!("job \"{job}\": no runs yet\n");
    }
    let seconds: Vec<Option<f64>> = runs.iter().map(duration).collect();
    let records: Vec<f64> = runs.iter().map(|r| r.records as f64).collect();
    let secs: Vec<f64> = seconds.iter().map(|s| s.unwrap_or(0.0)).collect();
    let (most_records, most_secs) = (max(&records), max(&secs));
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_header(["started", "status", "records", "", "seconds", ""]);
    for ((run, seconds), (n, s)) in runs.iter().zip(&seconds).zip(records.iter().zip(&secs)) {
        table.add_row([
            run.started_at.clone(),
            run.status.as_str().to_string(),
            run.records.to_string(),
            bar(*n, most_records),
            seconds
                .map(|s| format!("{s:.1}"))
                .unwrap_or_else(|| "-".into()),
            bar(*s, most_secs),
        ]);
    }
    let oldest_first =
        |values: &[f64]| sparkline(&values.iter().rev().copied().collect::<Vec<_>>());
    format!(
        "job \"{job}\": last {} run(s), newest first\nrecords {}   seconds {}   (oldest to newest)\n{table}\n",
        runs.len(),
        oldest_first(&records),
        oldest_first(&secs),
    )
}

/// Seconds from start to finish; None while running or when the process died.
fn duration(run: &RunRecord) -> Option<f64> {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let (start, end) = (parse(&run.started_at)?, parse(run.finished_at.as_deref()?)?);
    Some((end - start).num_milliseconds().max(0) as f64 / 1000.0)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// `value` of `most` as a bar of up to BAR_WIDTH characters; a value above
/// zero always shows at least a sliver, zero shows nothing.
fn bar(value: f64, most: f64) -> String {
    if value <= 0.0 || most <= 0.0 {
        return String::new();
    }
    let eighths = ((value / most) * (BAR_WIDTH * 8) as f64).round().max(1.0) as usize;
    let mut out = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        out.push(EIGHTHS[eighths % 8 - 1]);
    }
    out
}

/// One character per value, scaled to the largest; zero is a space, so a
/// run that synced nothing stands out.
fn sparkline(values: &[f64]) -> String {
    let most = max(values);
    values
        .iter()
        .map(|&v| match v > 0.0 && most > 0.0 {
            false => ' ',
            true => {
                let level = ((v / most) * (LEVELS.len() - 1) as f64).round() as usize;
                LEVELS[level.min(LEVELS.len() - 1)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunId, RunStatus};

    fn run(id: i64, status: RunStatus, start: &str, secs: Option<u32>, records: u64) -> RunRecord {
        let started_at = format!("2026-03-0{id}T{start}Z");
        let finished_at = secs.map(|s| {
            let at = chrono::DateTime::parse_from_rfc3339(&started_at).expect("time")
                + chrono::Duration::seconds(s.into());
            at.to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
        RunRecord {
            id: RunId(id),
            status,
            started_at,
            finished_at,
            pages: records / 100,
            records,
            error: None,
        }
    }

    /// A slowdown, a drop to zero and a failure, newest first as the store gives them.
    #[test]
    fn history_shows_a_slowdown_and_a_drop_to_zero() {
        let runs = [
            run(6, RunStatus::Failed, "06:00:00", Some(2), 0),
            run(5, RunStatus::Succeeded, "06:00:00", Some(61), 0),
            run(4, RunStatus::Succeeded, "06:00:00", Some(40), 1180),
            run(3, RunStatus::Succeeded, "06:00:00", Some(12), 1210),
            run(2, RunStatus::Succeeded, "06:00:00", Some(11), 1195),
            run(1, RunStatus::Running, "06:00:00", None, 300),
        ];
        insta::assert_snapshot!(render("orders", &runs));
    }

    #[test]
    fn a_job_that_never_ran_says_so() {
        assert_eq!(render("orders", &[]), "job \"orders\": no runs yet\n");
    }

    #[test]
    fn bars_scale_to_the_largest_and_zero_is_empty() {
        assert_eq!(bar(10.0, 10.0), "█".repeat(BAR_WIDTH));
        assert_eq!(bar(5.0, 10.0), "█".repeat(BAR_WIDTH / 2));
        assert_eq!(bar(0.0, 10.0), "");
        assert_eq!(bar(0.001, 10.0), "▏");
        assert_eq!(sparkline(&[0.0, 5.0, 10.0]), " ▅█");
    }
}
