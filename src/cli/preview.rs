//! `apisync preview JOB`: a job's first pages as `run` would fetch them,
//! printed instead of written: a table of the records (or JSON lines with
//! `--json`), then where pagination would go next, why it stopped, and the
//! high-water mark a run would store.

use std::fmt::Write as _;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

use super::Exit;
use super::args::{GlobalArgs, PreviewArgs};
use crate::fetch::Record;
use crate::plan::JobPlan;
use crate::run::{Preview, PreviewRequest, PreviewStart, PreviewStop};

/// Columns shown for a job that declares none: the first fields of its records.
const FIRST_FIELDS: usize = 6;
/// Most rows in the table; `--json` prints every record.
const TABLE_ROWS: usize = 50;
/// Longest cell text before it is cut with an ellipsis.
const CELL_CHARS: usize = 40;

pub async fn preview(global: &GlobalArgs, args: &PreviewArgs) -> Exit {
    let (plan, job) = match super::project::load_one_job(global, &args.job) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    let request = PreviewRequest {
        pages: args.pages,
        partition: args.partition.clone(),
    };
    match crate::run::preview(&plan, &job, &request).await {
        Ok(preview) if args.json => {
            for record in preview.pages.iter().flat_map(|(_, records)| records) {
                println!("{}", one_line(&record.json));
            }
            eprint!("{}", summary(&job, &preview));
            Exit::Ok
        }
        Ok(preview) => {
            println!("{}", records_table(&job, &preview));
            print!("{}", summary(&job, &preview));
            Exit::Ok
        }
        Err(err) => {
            eprintln!("error: {err}");
            Exit::Failed
        }
    }
}

/// A record's JSON text on one line, whitespace outside strings dropped:
/// the text as sent otherwise, so numbers keep every digit.
fn one_line(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !c.is_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// The columns shown: primary key, cursor field, declared columns, each
/// once, as (header, JSON pointer); the first fields when none is declared.
fn shown_columns(job: &JobPlan, first: Option<&Value>) -> Vec<(String, String)> {
    let mut columns: Vec<(String, String)> = Vec::new();
    for pointer in &job.records.primary_key {
        add_column(&mut columns, header_of(pointer), pointer);
    }
    if let Some(incremental) = &job.incremental {
        let pointer = &incremental.cursor_field;
        add_column(&mut columns, header_of(pointer), pointer);
    }
    for column in &job.output.columns {
        add_column(&mut columns, column.name.clone(), &column.pointer);
    }
    if columns.is_empty()
        && let Some(Value::Object(fields)) = first
    {
        for name in fields.keys().take(FIRST_FIELDS) {
            let pointer = format!("/{}", name.replace('~', "~0").replace('/', "~1"));
            add_column(&mut columns, name.clone(), &pointer);
        }
    }
    columns
}

/// Add a column unless its pointer is shown already.
fn add_column(columns: &mut Vec<(String, String)>, header: String, pointer: &str) {
    if !columns.iter().any(|(_, p)| p == pointer) {
        columns.push((header, pointer.to_string()));
    }
}

/// `/user/login` -> `user.login`.
fn header_of(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

fn records_table(job: &JobPlan, preview: &Preview) -> String {
    let records: Vec<&Record> = preview.pages.iter().flat_map(|(_, r)| r).collect();
    let parsed: Vec<Option<Value>> = records
        .iter()
        .map(|r| serde_json::from_str(&r.json).ok())
        .collect();
    let columns = shown_columns(job, parsed.first().and_then(Option::as_ref));
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_header(columns.iter().map(|(h, _)| h.as_str()));
    for value in parsed.iter().take(TABLE_ROWS) {
        table.add_row(columns.iter().map(|(_, pointer)| {
            let cell = value.as_ref().and_then(|v| v.pointer(pointer));
            cell_text(cell)
        }));
    }
    match parsed.len().checked_sub(TABLE_ROWS) {
        Some(more) if more > 0 => {
            format!("{table}\n... and {more} more record(s) (--json prints them all)")
        }
        _ => table.to_string(),
    }
}

fn cell_text(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    match text.char_indices().nth(CELL_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Where it started, the pages, next request, stop reason and mark.
fn summary(job: &JobPlan, preview: &Preview) -> String {
    let mut out = String::new();
    let stream = match preview.partition.as_str() {
        "" => String::new(),
        key => format!(", partition \"{key}\""),
    };
    let start = match preview.start {
        PreviewStart::NoDatabase => "from the first request (no database yet)".to_string(),
        PreviewStart::Fresh => "from the first request".to_string(),
        PreviewStart::Resumed(pages) => {
            format!("from the checkpoint a run left after {pages} committed page(s)")
        }
    };
    let since = preview
        .since
        .as_deref()
        .map(|s| format!(", since {s}"))
        .unwrap_or_default();
    let records: usize = preview.pages.iter().map(|(_, r)| r.len()).sum();
    let _ = writeln!(out, "job \"{}\"{stream}: {start}{since}", job.name);
    for (index, (url, page)) in preview.pages.iter().enumerate() {
        let _ = writeln!(out, "page {}: {url} ({} records)", index + 1, page.len());
    }
    let _ = writeln!(
        out,
        "{records} record(s) in {} page(s)",
        preview.pages.len()
    );
    let _ = match (&preview.stop, &preview.next) {
        (PreviewStop::Complete, _) => writeln!(
            out,
            "next: none\nstop: last page (a run would complete the stream here)"
        ),
        (PreviewStop::PageLimit, next) => writeln!(
            out,
            "next: {}\nstop: --pages {} reached; the API has more",
            next.as_deref().unwrap_or("-"),
            preview.pages.len()
        ),
    };
    let _ = writeln!(out, "mark: {}", mark_text(job, preview));
    let _ = writeln!(out, "(preview: nothing was written)");
    out
}

fn mark_text(job: &JobPlan, preview: &Preview) -> String {
    let Some(incremental) = &job.incremental else {
        return "none (the job is not incremental)".into();
    };
    let Some(mark) = &preview.mark else {
        return format!(
            "unchanged (no record had {}); a run keeps the stored one",
            incremental.cursor_field
        );
    };
    let mark = mark.trim_matches('"');
    match preview.stop {
        PreviewStop::Complete => format!("a run would store {mark}"),
        PreviewStop::PageLimit => format!(
            "{mark} from these pages; a run stores the largest {} of the whole stream when it completes",
            incremental.cursor_field
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_drops_whitespace_outside_strings_only() {
        let text = "{\n  \"a b\": \"x \\\" y\",\n  \"n\": 123456789012345678901234567890\n}";
        assert_eq!(
            one_line(text),
            r#"{"a b":"x \" y","n":123456789012345678901234567890}"#
        );
    }
}
