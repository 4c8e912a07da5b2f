//! Incremental windows (`{window.start}`, `{window.end}`): `[mark, end)`
//! cut into ranges of at most `window`, fetched one after another. Pure:
//! the stream loop asks where the first window starts, what follows a
//! window, and what mark a finished window leaves.
//!
//! The mark of a windowed stream is the end of its last completed window,
//! stored raw; `lookback` is taken off it only where a run starts, so a
//! window never reaches back into the one before it within a run.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::fetch::Window;
use crate::plan::{CursorType, IncrementalPlan, JobPlan, Lookback, Partition, WindowEnd, Windows};

/// The time slice a stream covers (`dates` partitions, backfill slices):
/// its windows start at the slice's start (until the stream has a mark)
/// and stop at its end, so each slice fetches its own range window by
/// window, not the job's whole range.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Slice<'a> {
    pub start: Option<&'a str>,
    pub end: Option<&'a str>,
}

impl<'a> Slice<'a> {
    pub(crate) fn of(partition: &'a Partition) -> Self {
        Slice {
            start: partition.value("partition.start"),
            end: partition.value("partition.end"),
        }
    }
}

/// A job's incremental plan and windows, when it fetches by windows.
pub(crate) fn of(job: &JobPlan) -> Option<(&IncrementalPlan, &Windows)> {
    let incremental = job.incremental.as_ref()?;
    Some((incremental, incremental.windows.as_ref()?))
}

/// Where the first window of a fresh stream starts: the stored mark less
/// `lookback`, or when there is no mark (or it is ignored) the slice's
/// start, else `initial`.
pub(crate) fn first_start(
    incremental: &IncrementalPlan,
    stored: Option<&str>,
    slice: Slice<'_>,
) -> Option<String> {
    let mark = stored.and_then(|text| serde_json::from_str::<Value>(text).ok());
    let mark = match mark {
        Some(Value::String(text)) => text,
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return match (incremental.cursor_type, slice.start) {
                (CursorType::Timestamp, Some(start)) => time(start).map(text_of),
                _ => incremental.initial.clone(),
            };
        }
    };
    Some(match (incremental.cursor_type, incremental.lookback) {
        (CursorType::Timestamp, Some(Lookback::Duration(back))) => match time(&mark) {
            Some(at) => text_of(at - chrono::Duration::from_std(back).unwrap_or_default()),
            None => mark,
        },
        (CursorType::Integer, Some(Lookback::Integer(back))) => match mark.parse::<i64>() {
            Ok(n) => n.saturating_sub(back).to_string(),
            Err(_) => mark,
        },
        _ => mark,
    })
}

/// The window that starts at `start` in a run that began at `now`; None
/// once `start` has reached the end (nothing left to fetch this run).
pub(crate) fn starting_at(
    incremental: &IncrementalPlan,
    windows: &Windows,
    start: &str,
    now: DateTime<Utc>,
    slice: Slice<'_>,
) -> Result<Option<Window>, String> {
    match incremental.cursor_type {
        CursorType::Timestamp => {
            let from = time(start).ok_or_else(|| {
                format!("the window start {start:?} is not an RFC 3339 time (hint: windows need a timestamp mark; check incremental.initial, or `apisync reset` the job if its stored mark came from a server in another spelling)")
            })?;
            let end = match &windows.end {
                WindowEnd::BeforeNow(back) => {
                    now - chrono::Duration::from_std(*back).unwrap_or_default()
                }
                WindowEnd::At(at) => {
                    time(at).ok_or_else(|| format!("`end` {at:?} is not a time"))?
                }
                WindowEnd::Open => return Err("a timestamp window needs an end".into()),
            };
            let end = match slice.end.and_then(time) {
                Some(slice_end) => end.min(slice_end),
                None => end,
            };
            let until = match windows.span {
                Some(Lookback::Duration(span)) => from
                    .checked_add_signed(chrono::Duration::from_std(span).unwrap_or_default())
                    .map_or(end, |later| later.min(end)),
                _ => end,
            };
            Ok((from < until).then(|| Window {
                start: text_of(from),
                end: text_of(until),
            }))
        }
        _ => {
            let from: i64 = start.parse().map_err(|_| {
                format!(
                    "the window start {start:?} is not an integer (hint: check incremental.initial)"
                )
            })?;
            let spanned = match windows.span {
                Some(Lookback::Integer(span)) => Some(from.saturating_add(span)),
                _ => None,
            };
            let end = match &windows.end {
                WindowEnd::At(at) => Some(
                    at.parse::<i64>()
                        .map_err(|_| format!("`end` {at:?} is not an integer"))?,
                ),
                _ => None,
            };
            let until = match (spanned, end) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return Err("an integer window needs `window` or `end`".into()),
            };
            Ok((from < until).then(|| Window {
                start: from.to_string(),
                end: until.to_string(),
            }))
        }
    }
}

/// What a window that just finished leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AfterWindow {
    /// The mark to store with its last page (JSON); None keeps the stored
    /// one.
    pub mark: Option<String>,
    /// The window that follows in this run, if any.
    pub next: Option<Window>,
}

/// After `window` finished in a run that began at `now`; `empty`: it
/// brought no records.
///
/// An open integer window (no `end`) that came back empty ends the run
/// without moving the mark: ids may still be created in it, so the next
/// run asks for it again.
pub(crate) fn after(
    incremental: &IncrementalPlan,
    windows: &Windows,
    window: &Window,
    empty: bool,
    now: DateTime<Utc>,
    slice: Slice<'_>,
) -> Result<AfterWindow, String> {
    if windows.end == WindowEnd::Open && empty {
        return Ok(AfterWindow {
            mark: None,
            next: None,
        });
    }
    let mark = match incremental.cursor_type {
        CursorType::Timestamp => Value::String(window.end.clone()),
        _ => match window.end.parse::<i64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(window.end.clone()),
        },
    };
    Ok(AfterWindow {
        mark: Some(mark.to_string()),
        next: starting_at(incremental, windows, &window.end, now, slice)?,
    })
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    crate::plan::parse_time(text)
}

fn text_of(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{OnMissingCursor, ParamLocation};
    use std::time::Duration;

    fn plan(cursor_type: CursorType, span: Option<Lookback>, end: WindowEnd) -> IncrementalPlan {
        IncrementalPlan {
            cursor_field: "/updated_at".into(),
            cursor_type,
            param: None,
            param_in: ParamLocation::Query,
            initial: Some("2024-01-01T00:00:00Z".into()),
            lookback: Some(Lookback::Duration(Duration::from_secs(600))),
            on_missing_cursor: OnMissingCursor::Error,
            windows: Some(Windows { span, end }),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        time(text).unwrap()
    }

    fn window(start: &str, end: &str) -> Window {
        Window {
            start: start.into(),
            end: end.into(),
        }
    }

    /// Every window of a run from `start`, as the stream loop walks them.
    fn walk(inc: &IncrementalPlan, start: &str, now: &str) -> Vec<Window> {
        let windows = inc.windows.as_ref().unwrap();
        let mut out = Vec::new();
        let mut next = starting_at(inc, windows, start, at(now), Slice::default()).unwrap();
        while let Some(w) = next {
            next = after(inc, windows, &w, false, at(now), Slice::default())
                .unwrap()
                .next;
            out.push(w);
        }
        out
    }

    #[test]
    fn thirty_day_windows_cover_mark_to_end_without_gap_or_overlap() {
        let inc = plan(
            CursorType::Timestamp,
            Some(Lookback::Duration(Duration::from_secs(30 * 86400))),
            WindowEnd::BeforeNow(Duration::from_secs(300)),
        );
        let walked = walk(&inc, "2024-01-01T00:00:00Z", "2024-03-15T12:05:00Z");
        assert_eq!(
            walked,
            [
                window("2024-01-01T00:00:00Z", "2024-01-31T00:00:00Z"),
                window("2024-01-31T00:00:00Z", "2024-03-01T00:00:00Z"),
                window("2024-03-01T00:00:00Z", "2024-03-15T12:00:00Z"),
            ]
        );
    }

    #[test]
    fn without_a_span_one_window_runs_from_the_mark_to_the_end() {
        let inc = plan(
            CursorType::Timestamp,
            None,
            WindowEnd::At("2024-02-01T00:00:00Z".into()),
        );
        let walked = walk(&inc, "2024-01-01T00:00:00+02:00", "2030-01-01T00:00:00Z");
        assert_eq!(
            walked,
            [window("2023-12-31T22:00:00Z", "2024-02-01T00:00:00Z")]
        );
        // A mark at or past the end: nothing to fetch.
        assert_eq!(
            walk(&inc, "2024-02-01T00:00:00Z", "2030-01-01T00:00:00Z"),
            []
        );
    }

    #[test]
    fn a_finished_window_leaves_its_end_as_the_mark() {
        let inc = plan(
            CursorType::Timestamp,
            None,
            WindowEnd::BeforeNow(Duration::ZERO),
        );
        let windows = inc.windows.as_ref().unwrap();
        let w = window("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z");
        let left = after(
            &inc,
            windows,
            &w,
            true,
            at("2024-01-02T00:00:00Z"),
            Slice::default(),
        )
        .unwrap();
        assert_eq!(left.mark.as_deref(), Some("\"2024-01-02T00:00:00Z\""));
        assert_eq!(left.next, None);
    }

    #[test]
    fn lookback_moves_only_a_stored_marks_start() {
        let inc = plan(
            CursorType::Timestamp,
            None,
            WindowEnd::BeforeNow(Duration::ZERO),
        );
        assert_eq!(
            first_start(&inc, Some("\"2024-05-01T12:00:00Z\""), Slice::default()).as_deref(),
            Some("2024-05-01T11:50:00Z")
        );
        assert_eq!(
            first_start(&inc, None, Slice::default()).as_deref(),
            Some("2024-01-01T00:00:00Z")
        );
    }

    #[test]
    fn integer_windows_stop_at_end_or_at_the_first_empty_open_window() {
        let mut inc = plan(
            CursorType::Integer,
            Some(Lookback::Integer(100)),
            WindowEnd::At("250".into()),
        );
        inc.lookback = Some(Lookback::Integer(5));
        let now = "2024-01-01T00:00:00Z";
        assert_eq!(
            walk(&inc, "0", now),
            [
                window("0", "100"),
                window("100", "200"),
                window("200", "250")
            ]
        );
        assert_eq!(
            first_start(&inc, Some("200"), Slice::default()).as_deref(),
            Some("195")
        );
        inc.windows.as_mut().unwrap().end = WindowEnd::Open;
        let windows = inc.windows.as_ref().unwrap();
        let full = after(
            &inc,
            windows,
            &window("0", "100"),
            false,
            at(now),
            Slice::default(),
        )
        .unwrap();
        assert_eq!(full.mark.as_deref(), Some("100"));
        assert_eq!(full.next, Some(window("100", "200")));
        let empty = after(
            &inc,
            windows,
            &window("100", "200"),
            true,
            at(now),
            Slice::default(),
        )
        .unwrap();
        assert_eq!(
            empty,
            AfterWindow {
                mark: None,
                next: None
            }
        );
    }

    #[test]
    fn a_dates_slice_bounds_its_windows_until_it_has_a_mark() {
        let inc = plan(
            CursorType::Timestamp,
            Some(Lookback::Duration(Duration::from_secs(7 * 86400))),
            WindowEnd::BeforeNow(Duration::ZERO),
        );
        let windows = inc.windows.as_ref().unwrap();
        let slice = Slice {
            start: Some("2024-03-01"),
            end: Some("2024-03-10"),
        };
        let start = first_start(&inc, None, slice).unwrap();
        assert_eq!(start, "2024-03-01T00:00:00Z");
        let now = at("2025-01-01T00:00:00Z");
        let first = starting_at(&inc, windows, &start, now, slice)
            .unwrap()
            .unwrap();
        assert_eq!(
            first,
            window("2024-03-01T00:00:00Z", "2024-03-08T00:00:00Z")
        );
        let second = after(&inc, windows, &first, false, now, slice).unwrap();
        assert_eq!(
            second.next,
            Some(window("2024-03-08T00:00:00Z", "2024-03-10T00:00:00Z"))
        );
        let last = after(&inc, windows, &second.next.unwrap(), false, now, slice).unwrap();
        assert_eq!(last.next, None);
        assert_eq!(last.mark.as_deref(), Some("\"2024-03-10T00:00:00Z\""));
    }

    #[test]
    fn a_start_that_is_not_a_time_is_an_error_that_says_so() {
        let inc = plan(
            CursorType::Timestamp,
            None,
            WindowEnd::BeforeNow(Duration::ZERO),
        );
        let windows = inc.windows.as_ref().unwrap();
        let err = starting_at(
            &inc,
            windows,
            "yesterday",
            at("2024-01-01T00:00:00Z"),
            Slice::default(),
        )
        .unwrap_err();
        assert!(
            err.contains("\"yesterday\" is not an RFC 3339 time"),
            "{err}"
        );
    }
}
