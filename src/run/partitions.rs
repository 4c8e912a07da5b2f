//! The streams of a job: one for an unpartitioned job, else one per
//! partition value, per row value of a parent job's table, or per date slice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures::{Stream, TryStreamExt as _, stream};

use super::env::RunEnv;
use super::error::RunError;
use super::mode::JobMode;
use crate::plan::{JobPlan, Partition, PartitionsPlan};
use crate::store::{BACKFILL_PREFIX, StoreReader};

/// Partitions read (and checked against the finished set) at a time: with
/// the streams in flight, all of a job's partitions that are in memory.
pub(crate) const BATCH: usize = 500;

/// The partitions of this pass of `job` that have not finished yet, as a
/// stream read one batch at a time: a `from_job` parent table with 100,000
/// rows never sits in memory, nor does the set of finished partitions.
/// Reads go through their own read-only connection, not the writer thread.
/// Date ranges up to "now" end at `now` (a sharded run passes the
/// invocation's start, so that every shard lists the same slices).
pub(crate) fn unfinished_partitions(
    env: &RunEnv,
    job: &JobPlan,
    mode: &JobMode,
    now: DateTime<Utc>,
) -> Result<impl Stream<Item = Result<Partition, RunError>> + Send + 'static, RunError> {
    let source = match (&mode.backfill, &job.partitions) {
        (Some(slices), _) => Source::List(
            slices
                .iter()
                .map(|slice| Partition {
                    key: format!("{BACKFILL_PREFIX}{}", slice.key),
                    vars: slice.vars.clone(),
                })
                .collect::<Vec<_>>()
                .into_iter(),
        ),
        (None, None) => Source::List(vec![Partition::whole()].into_iter()),
        (None, Some(PartitionsPlan::Values(values))) => Source::List(
            values
                .iter()
                .map(|v| value_partition(v))
                .collect::<Vec<_>>()
                .into_iter(),
        ),
        (None, Some(PartitionsPlan::Dates { from, to, step })) => Source::List(
            date_slices(from, to, *step, now)
                .map_err(|message| RunError::Partitions {
                    job: job.name.clone(),
                    message,
                })?
                .into_iter(),
        ),
        (None, Some(from_job)) => {
            let Some((parent, pick)) = Pick::of(from_job) else {
                unreachable!("values and dates are matched above")
            };
            Source::Table {
                parent: parent.to_string(),
                table: env
                    .parent_tables
                    .get(parent)
                    .cloned()
                    .unwrap_or_else(|| parent.to_string()),
                pick,
                after: None,
                checked: false,
                changed_only: from_job.changed_only_parent().is_some() && !mode.full_refresh,
                since: None,
            }
        }
    };
    let batches = Batches {
        reader: shared_reader(env)?,
        job: job.name.clone(),
        source,
    };
    let batches = stream::try_unfold(batches, |mut batches| async move {
        let batch = batches.next().await?;
        Ok::<_, RunError>(batch.map(|batch| (batch, batches)))
    });
    Ok(batches
        .map_ok(|batch| stream::iter(batch.into_iter().map(Ok)))
        .try_flatten())
}

/// What of a parent row makes a partition.
#[derive(Clone)]
pub(crate) enum Pick {
    /// `field`: one value, `{partition}`.
    Field(String),
    /// `fields`: (name, pointer) pairs, `{partition.NAME}`.
    Fields(Vec<(String, String)>),
}

impl Pick {
    /// The parent job and what of its rows makes a partition; None for
    /// partitions that do not come from a parent.
    pub(crate) fn of(plan: &PartitionsPlan) -> Option<(&str, Pick)> {
        match plan {
            PartitionsPlan::FromJob { job, field, .. } => Some((job, Pick::Field(field.clone()))),
            PartitionsPlan::FromJobFields { job, fields, .. } => {
                Some((job, Pick::Fields(fields.clone())))
            }
            PartitionsPlan::Values(_) | PartitionsPlan::Dates { .. } => None,
        }
    }
}

/// The run's read-only connection, opened on first use.
fn shared_reader(env: &RunEnv) -> Result<Arc<Mutex<StoreReader>>, RunError> {
    let mut slot = env
        .reader
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(reader) = slot.as_ref() {
        return Ok(reader.clone());
    }
    let reader = Arc::new(Mutex::new(StoreReader::open(&env.database)?));
    *slot = Some(reader.clone());
    Ok(reader)
}

enum Source {
    List(std::vec::IntoIter<Partition>),
    Table {
        parent: String,
        table: String,
        pick: Pick,
        /// The last value of the previous page (keyset pagination).
        after: Option<String>,
        /// Whether the table was found to exist (and `since` read).
        checked: bool,
        /// `changed_only` (and not `--full-refresh`): only the parent rows
        /// written since `since`.
        changed_only: bool,
        /// The start of the job's last finished pass, read with the first
        /// batch: the same for the whole pass, which moves it only when it
        /// completes.
        since: Option<String>,
    },
}

struct Batches {
    reader: Arc<Mutex<StoreReader>>,
    job: String,
    source: Source,
}

impl Batches {
    /// The next batch without its finished partitions (possibly empty),
    /// or None at the end.
    async fn next(&mut self) -> Result<Option<Vec<Partition>>, RunError> {
        let job = self.job.clone();
        let read = Reads {
            reader: self.reader.clone(),
            job: job.clone(),
        };
        let batch: Vec<Partition> = match &mut self.source {
            Source::List(list) => list.by_ref().take(BATCH).collect(),
            Source::Table {
                parent,
                table,
                pick,
                after,
                checked,
                changed_only,
                since,
            } => {
                if !*checked {
                    let name = table.clone();
                    if !read.run(move |r| r.has_table(&name)).await? {
                        return Err(RunError::Partitions {
                            job,
                            message: format!(
                                "partitions.from_job: job \"{parent}\" has no table \"{table}\" yet \
                                 (hint: run it first, or add depends_on = [\"{parent}\"])"
                            ),
                        });
                    }
                    if *changed_only {
                        let job = job.clone();
                        *since = read.run(move |r| r.last_pass_start(&job)).await?;
                    }
                    *checked = true;
                }
                let (name, pick, from) = (table.clone(), pick.clone(), after.clone());
                let page = Page {
                    after: from,
                    since: since.clone(),
                };
                let (values, partitions) = read
                    .run(move |r| parent_page(r, &name, &pick, &page, BATCH))
                    .await?;
                if let Some(last) = values.last() {
                    *after = Some(last.clone());
                }
                partitions
            }
        };
        if batch.is_empty() {
            return Ok(None);
        }
        let keys: Vec<String> = batch.iter().map(|p| p.key.clone()).collect();
        let finished = read
            .run(move |r| {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                r.finished_among(&job, &keys)
            })
            .await?;
        Ok(Some(
            batch
                .into_iter()
                .filter(|p| !finished.contains(&p.key))
                .collect(),
        ))
    }
}

/// Reads on the shared read-only connection.
struct Reads {
    reader: Arc<Mutex<StoreReader>>,
    job: String,
}

impl Reads {
    /// Run a read on a blocking thread: SQLite calls block.
    async fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&StoreReader) -> Result<R, crate::store::StoreError> + Send + 'static,
    ) -> Result<R, RunError> {
        let reader = self.reader.clone();
        let job = self.job.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let reader = reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&reader)
        })
        .await;
        match joined {
            Ok(result) => Ok(result?),
            Err(err) => Err(RunError::Partitions {
                job,
                message: format!("reading partitions stopped: {err}"),
            }),
        }
    }
}

/// Where a page of a parent's values starts, and which rows it reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Page {
    /// The last value of the page before (keyset pagination).
    pub after: Option<String>,
    /// `changed_only`: the rows written at or after this (the start of the
    /// job's last finished pass); None: every row.
    pub since: Option<String>,
}

/// One page of a parent's values: the values as read (the last one is
/// where the next page starts) and the partitions they make.
pub(crate) fn parent_page(
    reader: &StoreReader,
    table: &str,
    pick: &Pick,
    page: &Page,
    limit: usize,
) -> Result<(Vec<String>, Vec<Partition>), crate::store::StoreError> {
    let (after, since) = (page.after.as_deref(), page.since.as_deref());
    match pick {
        Pick::Field(pointer) => {
            let values = reader.distinct_values_page(table, pointer, after, since, limit)?;
            let partitions = values.iter().map(|v| value_partition(v)).collect();
            Ok((values, partitions))
        }
        Pick::Fields(fields) => {
            let pointers: Vec<String> = fields.iter().map(|(_, p)| p.clone()).collect();
            let rows = reader.distinct_combinations_page(table, &pointers, after, since, limit)?;
            let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
            let partitions = rows
                .iter()
                .filter_map(|row| fields_partition(&names, row))
                .collect();
            Ok((rows, partitions))
        }
    }
}

/// The partition of one combination of a parent row's values (`row`, a
/// JSON array of their texts in the order of `names`): its key is the JSON
/// object of the texts by name, keys sorted (`{"brand":"7","id":"42"}`),
/// the same whatever store read it; `{partition.NAME}` is a value's text.
pub(crate) fn fields_partition(names: &[&str], row: &str) -> Option<Partition> {
    let serde_json::Value::Array(values) = serde_json::from_str(row).ok()? else {
        return None;
    };
    if values.len() != names.len() {
        return None;
    }
    let by_name: std::collections::BTreeMap<&str, &serde_json::Value> =
        names.iter().copied().zip(values.iter()).collect();
    let key = serde_json::to_string(&by_name).ok()?;
    let vars = names
        .iter()
        .zip(&values)
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            (format!("partition.{name}"), text)
        })
        .collect();
    Some(Partition { key, vars })
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
            (
                slices[0].value("partition.start"),
                slices[0].value("partition.end")
            ),
            (Some("2024-01-01"), Some("2024-01-02"))
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

    /// What `_partition` holds, per kind: `values` and `field` make the
    /// same partition (a parent's number is read as its text), `fields`
    /// an object whose text is its key, `dates` (and backfill slices) the
    /// bounds.
    #[test]
    fn each_kind_of_partition_makes_its_partition_object() {
        assert_eq!(value_partition("eu").object(), r#"{"partition":"eu"}"#);
        assert_eq!(value_partition("42").object(), r#"{"partition":"42"}"#);
        let fields = fields_partition(&["id", "brand"], r#"["12","7"]"#).unwrap();
        assert_eq!(fields.object(), r#"{"brand":"7","id":"12"}"#);
        assert_eq!(fields.object(), fields.key);
        let slices = date_slices(
            "2024-01-01",
            "2024-01-02",
            Duration::from_secs(86_400),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(
            slices[0].object(),
            r#"{"end":"2024-01-02","start":"2024-01-01"}"#
        );
        let hours = date_slices(
            "2024-01-01T00:00:00Z",
            "2024-01-01T01:00:00Z",
            Duration::from_secs(3_600),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(
            hours[0].object(),
            r#"{"end":"2024-01-01T01:00:00Z","start":"2024-01-01T00:00:00Z"}"#
        );
    }

    #[test]
    fn a_bad_bound_is_an_error_not_a_panic() {
        let err = date_slices("yesterday", "now", Duration::from_secs(60), Utc::now()).unwrap_err();
        assert!(err.contains("yesterday"), "{err}");
    }
}
