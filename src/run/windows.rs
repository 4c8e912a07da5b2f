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
use crate::plan::{
    CursorType, IncrementalPlan, JobPlan, Lookback, Partition, PartitionsPlan, WindowEnd, Windows,
};

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
    /// The slice of a `dates` partition or a backfill slice; none for any
    /// other partition (a `fields` value named `start` is not a bound).
    pub(crate) fn of(job: &JobPlan, partition: &'a Partition) -> Self {
        let sliced = matches!(job.partitions, Some(PartitionsPlan::Dates { .. }))
            || partition.key.starts_with(crate::store::BACKFILL_PREFIX);
        match sliced {
            true => Slice {
                start: partition.value("partition.start"),
                end: partition.value("partition.end"),
            },
            false => Slice::default(),
        }
    }
}

/// The most windows one run of a stream may go through. A window costs at
/// least one request: `window = "1s"` over years is a mistake to report
/// before the first request, not a run of millions.
pub(crate) const MAX_WINDOWS: i64 = 100_000;

/// `span` as chrono's duration; None when longer than chrono can hold
/// (hundreds of millions of years): then no window is shorter than the
/// whole range.
fn signed(span: std::time::Duration) -> Option<chrono::Duration> {
    chrono::Duration::from_std(span).ok()
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
    let Some(mark) = super::incremental::mark_text(stored) else {
        let slice_start = match incremental.cursor_type {
            CursorType::Timestamp => slice.start.and_then(time).map(text_of),
            _ => None,
        };
        return slice_start.or_else(|| incremental.initial.clone());
    };
    Some(match (incremental.cursor_type, incremental.lookback) {
        // A lookback reaching before the calendar starts at its first day.
        (CursorType::Timestamp, Some(Lookback::Duration(back))) => match time(&mark) {
            Some(at) => text_of(
                signed(back)
                    .and_then(|back| at.checked_sub_signed(back))
                    .unwrap_or(DateTime::<Utc>::MIN_UTC),
            ),
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
            let end = time_end(windows, now, slice)?;
            let until = match windows.span {
                Some(Lookback::Duration(span)) => signed(span)
                    .and_then(|span| from.checked_add_signed(span))
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

/// Where a run that began at `now` stops its timestamp windows: `end`,
/// cut at the slice's end. An end before the calendar's first day leaves
/// nothing to fetch.
fn time_end(
    windows: &Windows,
    now: DateTime<Utc>,
    slice: Slice<'_>,
) -> Result<DateTime<Utc>, String> {
    let end = match &windows.end {
        WindowEnd::BeforeNow(back) => signed(*back)
            .and_then(|back| now.checked_sub_signed(back))
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
        WindowEnd::At(at) => time(at).ok_or_else(|| format!("`end` {at:?} is not a time"))?,
        WindowEnd::Open => return Err("a timestamp window needs an end".into()),
    };
    Ok(match slice.end.and_then(time) {
        Some(slice_end) => end.min(slice_end),
        None => end,
    })
}

/// What a finished window brought: whether any record, and the largest
/// cursor value among them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<'a> {
    pub empty: bool,
    pub max: Option<&'a Value>,
}

/// A window that goes on through `MAX_WINDOWS` more windows before it
/// reaches its end is refused: Err says so and what to change.
pub(crate) fn check_count(
    incremental: &IncrementalPlan,
    windows: &Windows,
    first: &Window,
    now: DateTime<Utc>,
    slice: Slice<'_>,
) -> Result<(), String> {
    let count = match (incremental.cursor_type, windows.span) {
        (CursorType::Timestamp, Some(Lookback::Duration(span))) => {
            let Some(start) = time(&first.start) else {
                return Ok(());
            };
            let total = (time_end(windows, now, slice)? - start).num_seconds();
            let span = span.as_secs().max(1) as i64;
            total / span + i64::from(total % span != 0)
        }
        (CursorType::Integer, Some(Lookback::Integer(span))) => match &windows.end {
            WindowEnd::At(end) => {
                let (Ok(start), Ok(end)) = (first.start.parse::<i64>(), end.parse::<i64>()) else {
                    return Ok(());
                };
                (end.saturating_sub(start) / span.max(1)).saturating_add(1)
            }
            _ => return Ok(()),
        },
        _ => return Ok(()),
    };
    match count > MAX_WINDOWS {
        true => Err(format!(
            "from {} the run would go through {count} windows (one request each at least); apisync refuses more than {MAX_WINDOWS} in one run (hint: make incremental.window longer, or move incremental.initial or end closer)",
            first.start
        )),
        false => Ok(()),
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
    seen: Seen<'_>,
    now: DateTime<Utc>,
    slice: Slice<'_>,
) -> Result<AfterWindow, String> {
    if windows.end == WindowEnd::Open {
        // Ids are still being created past the largest one seen, inside
        // this window too: the mark goes just past that id, never to the
        // window's end. An empty window ends the run where the mark is.
        if seen.empty {
            return Ok(AfterWindow {
                mark: None,
                next: None,
            });
        }
        let past_max = seen
            .max
            .and_then(Value::as_i64)
            .map(|max| Value::from(max.saturating_add(1)).to_string());
        return Ok(AfterWindow {
            mark: past_max,
            next: starting_at(incremental, windows, &window.end, now, slice)?,
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

    const FULL: Seen<'static> = Seen {
        empty: false,
        max: None,
    };
    const EMPTY: Seen<'static> = Seen {
        empty: true,
        max: None,
    };

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
            next = after(inc, windows, &w, FULL, at(now), Slice::default())
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
            EMPTY,
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
        // Ids up to 49 in [0, 100): the mark goes just past 49, not to 100,
        // since ids 50 to 99 may still be created.
        let max = Value::from(49);
        let seen = Seen {
            empty: false,
            max: Some(&max),
        };
        let full = after(
            &inc,
            windows,
            &window("0", "100"),
            seen,
            at(now),
            Slice::default(),
        )
        .unwrap();
        assert_eq!(full.mark.as_deref(), Some("50"));
        assert_eq!(full.next, Some(window("100", "200")));
        let empty = after(
            &inc,
            windows,
            &window("100", "200"),
            EMPTY,
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
        let second = after(&inc, windows, &first, FULL, now, slice).unwrap();
        assert_eq!(
            second.next,
            Some(window("2024-03-08T00:00:00Z", "2024-03-10T00:00:00Z"))
        );
        let last = after(&inc, windows, &second.next.unwrap(), FULL, now, slice).unwrap();
        assert_eq!(last.next, None);
        assert_eq!(last.mark.as_deref(), Some("\"2024-03-10T00:00:00Z\""));
    }

    #[test]
    fn bounds_beyond_the_calendar_are_errors_or_ends_never_panics() {
        let mut inc = plan(
            CursorType::Timestamp,
            Some(Lookback::Duration(Duration::from_secs(u64::MAX / 4))),
            WindowEnd::BeforeNow(Duration::from_secs(300_000 * 365 * 86400)),
        );
        inc.lookback = Some(Lookback::Duration(Duration::from_secs(
            300_000 * 365 * 86400,
        )));
        let windows = inc.windows.clone().unwrap();
        let now = at("2024-01-01T00:00:00Z");
        // An end before the calendar: nothing to fetch.
        let none = starting_at(
            &inc,
            &windows,
            "2024-01-01T00:00:00Z",
            now,
            Slice::default(),
        );
        assert_eq!(none, Ok(None));
        // A lookback beyond it starts at the calendar's first day.
        assert!(first_start(&inc, Some("\"2024-05-01T12:00:00Z\""), Slice::default()).is_some());
        // A window longer than chrono holds is one window to the end.
        inc.windows.as_mut().unwrap().end = WindowEnd::BeforeNow(Duration::ZERO);
        let windows = inc.windows.clone().unwrap();
        let one = starting_at(
            &inc,
            &windows,
            "2023-01-01T00:00:00Z",
            now,
            Slice::default(),
        );
        assert_eq!(
            one,
            Ok(Some(window("2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z")))
        );
    }

    #[test]
    fn a_million_windows_are_refused_before_the_first_request() {
        let inc = plan(
            CursorType::Timestamp,
            Some(Lookback::Duration(Duration::from_secs(1))),
            WindowEnd::At("2024-01-03T00:00:00Z".into()),
        );
        let windows = inc.windows.as_ref().unwrap();
        let now = at("2030-01-01T00:00:00Z");
        let first = window("2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z");
        let err = check_count(&inc, windows, &first, now, Slice::default()).unwrap_err();
        assert!(err.contains("172800 windows"), "{err}");
        let day = window("2024-01-02T00:00:00Z", "2024-01-02T00:00:01Z");
        let short = check_count(&inc, windows, &day, now, Slice::default());
        assert_eq!(short, Ok(()), "86400 windows are allowed");
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
