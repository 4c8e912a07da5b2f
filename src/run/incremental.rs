//! High-water marks: what an incremental stream asks for first, and what it
//! leaves for the next run. The mark is the largest `cursor_field` seen in a
//! completed stream, minus `lookback`, so late writes are read again (merge
//! makes that harmless).

use serde_json::Value;

use super::windows::{self, Slice};
use crate::fetch::StreamPosition;
use crate::plan::{CursorType, JobPlan, Lookback, Partition};

/// The lower bound for a fresh stream: the stored mark, else `initial`.
pub(crate) fn since(job: &JobPlan, stored_mark: Option<&str>) -> Option<String> {
    let incremental = job.incremental.as_ref()?;
    mark_text(stored_mark).or_else(|| incremental.initial.clone())
}

/// A stored mark (JSON) as the text a request sends: a string as is, any
/// other value as its JSON; None for none or null.
pub(crate) fn mark_text(stored_mark: Option<&str>) -> Option<String> {
    match serde_json::from_str::<Value>(stored_mark?).ok()? {
        Value::String(text) => Some(text),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Where a stream without a checkpoint starts, in a run that began at
/// `now`: since its mark (`stored_mark`, None when absent or ignored),
/// and for a job that fetches by windows, in its first window. None when
/// no window is left before the end: nothing to fetch this run. Err says
/// why the first window cannot be placed.
pub(crate) fn fresh_position(
    job: &JobPlan,
    partition: &Partition,
    stored_mark: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<StreamPosition>, String> {
    let Some((incremental, _)) = windows::of(job) else {
        let since = since(job, stored_mark);
        return Ok(Some(StreamPosition::start(since).at_if_used(job, now)));
    };
    let slice = Slice::of(job, partition);
    let start = windows::first_start(incremental, stored_mark, slice);
    let fresh = StreamPosition::start(start).at_if_used(job, now);
    let position = in_window(fresh, job, partition, now)?;
    if let (Some(position), Some((incremental, plan))) = (&position, windows::of(job))
        && let Some(window) = &position.window
    {
        windows::check_count(incremental, plan, window, now, slice)?;
    }
    Ok(position)
}

/// A saved checkpoint, as a run that began at `now` goes on from it. One
/// saved in the other form (with windows, the job now without, or the
/// other way round) is refused unless it had not begun: its next page
/// cannot be asked for in the new form without fetching again pages it
/// wrote, or skipping some.
pub(crate) fn resumed_position(
    job: &JobPlan,
    partition: &Partition,
    saved: StreamPosition,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<StreamPosition>, String> {
    // A checkpoint saved before `{now}` was kept takes this run's.
    let saved = saved.at_if_used(job, now);
    let windowed = windows::of(job).is_some();
    let begun = saved.next != crate::fetch::NextRequest::Start;
    match (saved.window.is_some(), windowed) {
        (false, true) if !begun => in_window(saved, job, partition, now),
        (true, false) if !begun => Ok(Some(StreamPosition {
            window: None,
            ..saved
        })),
        (false, true) | (true, false) => Err(format!(
            "the saved checkpoint was written when the job {} by windows, and the job file now {}: its next page cannot be asked for in the new form (hint: put the job file back until the stream finishes, or `apisync reset {} --keep-marks` to start it over from its mark, in append mode after deleting the rows it wrote since it last finished)",
            if windowed { "did not fetch" } else { "fetched" },
            if windowed { "does" } else { "does not" },
            job.name
        )),
        _ => Ok(Some(saved)),
    }
}

/// `position` in the window that starts at its `since`.
fn in_window(
    position: StreamPosition,
    job: &JobPlan,
    partition: &Partition,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<StreamPosition>, String> {
    let Some((incremental, plan)) = windows::of(job) else {
        return Ok(Some(position));
    };
    let start = position.since.as_deref().ok_or(
        "the stream has no mark and no `initial` to start its first window at (hint: add incremental.initial)",
    )?;
    let window = windows::starting_at(incremental, plan, start, now, Slice::of(job, partition))?;
    Ok(window.map(|window| StreamPosition {
        window: Some(window),
        ..position
    }))
}

/// The mark to store when a stream completes; None keeps the previous one
/// (a stream that returned no records).
pub(crate) fn next_mark(job: &JobPlan, max_seen: Option<&Value>) -> Option<String> {
    let incremental = job.incremental.as_ref()?;
    let max_seen = max_seen?;
    let mark = match (incremental.cursor_type, incremental.lookback, max_seen) {
        (CursorType::Timestamp, Some(Lookback::Duration(back)), Value::String(text)) => {
            match chrono::DateTime::parse_from_rfc3339(text) {
                Ok(at) => {
                    let back = chrono::Duration::from_std(back).unwrap_or(chrono::Duration::zero());
                    let earlier = at.with_timezone(&chrono::Utc) - back;
                    Value::String(earlier.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                }
                Err(_) => max_seen.clone(),
            }
        }
        (CursorType::Integer, Some(Lookback::Integer(back)), value) => match value.as_i64() {
            Some(n) => Value::from(n.saturating_sub(back)),
            None => value.clone(),
        },
        _ => max_seen.clone(),
    };
    Some(mark.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{IncrementalPlan, OnMissingCursor, ParamLocation};
    use std::time::Duration;

    fn with_incremental(cursor_type: CursorType, lookback: Option<Lookback>) -> IncrementalPlan {
        IncrementalPlan {
            cursor_field: "/updated_at".into(),
            cursor_type,
            param: Some("updated_since".into()),
            param_in: ParamLocation::Query,
            initial: Some("2024-01-01T00:00:00Z".into()),
            lookback,
            on_missing_cursor: OnMissingCursor::Error,
            windows: None,
        }
    }

    fn mark_of(incremental: IncrementalPlan, seen: Value) -> Option<String> {
        let mut job = crate::run::test_support::job("orders");
        job.incremental = Some(incremental);
        next_mark(&job, Some(&seen))
    }

    #[test]
    fn timestamp_mark_subtracts_lookback_in_utc() {
        let plan = with_incremental(
            CursorType::Timestamp,
            Some(Lookback::Duration(Duration::from_secs(600))),
        );
        let mark = mark_of(plan, Value::from("2024-05-01T12:00:00+02:00"));
        assert_eq!(mark.as_deref(), Some("\"2024-05-01T09:50:00Z\""));
    }

    #[test]
    fn integer_mark_subtracts_lookback() {
        let plan = with_incremental(CursorType::Integer, Some(Lookback::Integer(5)));
        assert_eq!(mark_of(plan, Value::from(100)).as_deref(), Some("95"));
    }

    #[test]
    fn since_prefers_the_stored_mark_over_initial() {
        let mut job = crate::run::test_support::job("orders");
        job.incremental = Some(with_incremental(CursorType::Timestamp, None));
        assert_eq!(since(&job, None).as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(
            since(&job, Some("\"2024-06-01T00:00:00Z\"")).as_deref(),
            Some("2024-06-01T00:00:00Z")
        );
    }
}
