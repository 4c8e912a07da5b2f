//! A stream's partition values in its records' key and columns
//! (`primary_key = ["{partition.id}", "/id"]`, `columns = { ticket_id =
//! "{partition.id}" }`): put in after a page is read, so the reading itself
//! (the one-pass scan, the key from the raw text) is the same for every job,
//! and a job without them pays one check per page.

use serde_json::value::RawValue;

use crate::plan::{JobPlan, Partition};
use crate::record::Record;

/// What of the partition goes where; empty for most jobs.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionValues {
    /// (position in the whole key, the value as a JSON string).
    key: Vec<(usize, String)>,
    /// (column index, the value).
    columns: Vec<(usize, serde_json::Value)>,
}

impl PartitionValues {
    pub(crate) fn new(job: &JobPlan, partition: &Partition) -> Self {
        let text = |name: &str| partition.value(name).unwrap_or_default().to_string();
        let key = job
            .records
            .partition_key
            .iter()
            .map(|(at, name)| (*at, serde_json::Value::from(text(name)).to_string()))
            .collect();
        let columns = job
            .output
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, column)| {
                let name = crate::plan::partition_placeholder(&column.pointer)?;
                Some((i, serde_json::Value::from(text(name))))
            })
            .collect();
        PartitionValues { key, columns }
    }

    /// Put the values into `records`.
    pub(crate) fn apply(&self, records: &mut [Record]) {
        if self.key.is_empty() && self.columns.is_empty() {
            return;
        }
        for record in records {
            if let Some(pk) = &record.pk
                && !self.key.is_empty()
            {
                record.pk = Some(with_parts(pk, &self.key));
            }
            for (i, value) in &self.columns {
                if let Some(slot) = record.columns.get_mut(*i) {
                    *slot = value.clone();
                }
            }
        }
    }
}

/// The key `pk` (a canonical JSON array of the pointer parts) with `parts`
/// put in at their positions.
fn with_parts(pk: &str, parts: &[(usize, String)]) -> String {
    let read: Vec<&RawValue> = serde_json::from_str(pk).unwrap_or_default();
    let mut read = read.into_iter();
    let total = read.len() + parts.len();
    let mut out =
        String::with_capacity(pk.len() + parts.iter().map(|(_, p)| p.len() + 1).sum::<usize>());
    out.push('[');
    for at in 0..total {
        if at > 0 {
            out.push(',');
        }
        match parts.iter().find(|(position, _)| *position == at) {
            Some((_, part)) => out.push_str(part),
            None => out.push_str(read.next().map_or("null", RawValue::get)),
        }
    }
    out.push(']');
    out
}

/// The key `stored` (a row's `_pk`) without the parts at `positions`: what
/// the record's pointers alone make, to compare with a key made again.
/// None when `stored` is not a key of `total` parts (a key written before
/// partition parts were added, or after some were taken out).
pub(crate) fn without_parts(stored: &str, positions: &[usize], total: usize) -> Option<String> {
    let parts: Vec<&RawValue> = serde_json::from_str(stored).ok()?;
    if parts.len() != total {
        return None;
    }
    let kept: Vec<&str> = parts
        .iter()
        .enumerate()
        .filter(|(i, _)| !positions.contains(i))
        .map(|(_, part)| part.get())
        .collect();
    Some(format!("[{}]", kept.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_go_in_at_their_places_and_come_out_again() {
        let parts = [(0, "\"42\"".to_string()), (2, "\"eu\"".to_string())];
        assert_eq!(with_parts("[7,\"x\"]", &parts), "[\"42\",7,\"eu\",\"x\"]");
        assert_eq!(with_parts("[7]", &parts[..1]), "[\"42\",7]");
        let stored = "[\"42\",7,\"eu\",\"x\"]";
        assert_eq!(
            without_parts(stored, &[0, 2], 4).as_deref(),
            Some("[7,\"x\"]")
        );
        assert_eq!(without_parts("not json", &[0], 1), None);
        // A key stored before a partition part was added has fewer parts.
        assert_eq!(without_parts("[5]", &[1], 2), None);
    }
}
