//! `[incremental]` and `[partitions]` -> their plans.

use super::checks;
use super::diagnostics::Sink;
use crate::definition::{
    CursorTypeDef, IncrementalDef, LookbackDef, OnMissingCursorDef, ParamInDef, PartitionsDef,
    ScalarDef,
};
use crate::plan::{
    CursorType, IncrementalPlan, Lookback, OnMissingCursor, ParamLocation, PartitionsPlan,
    WindowEnd, Windows,
};

/// Which window placeholders the job's request holds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WindowUse {
    pub start: bool,
    pub end: bool,
}

impl WindowUse {
    pub(crate) fn any(self) -> bool {
        self.start || self.end
    }
}

/// `paging_in_body`: the pagination sends its parameters in the body
/// (`cursor_in` or `param_in` = "body"), which makes the body the default
/// place for the mark too.
pub(crate) fn plan_incremental(
    def: &IncrementalDef,
    paging_in_body: bool,
    window_use: WindowUse,
    sink: &mut Sink<'_>,
) -> Option<IncrementalPlan> {
    let mut ok = true;
    let mut fail = |sink: &mut Sink<'_>, span, key: &str, (m, h): checks::Problem| {
        sink.at_span(span, &format!("incremental.{key}"), m, h);
        ok = false;
    };
    if let Err(p) = checks::pointer("cursor_field", def.cursor_field.get_ref(), false) {
        fail(sink, def.cursor_field.span(), "cursor_field", p);
    }
    let cursor_type = cursor_type(def);
    let param_in = match def.param_in.as_ref().map(|p| *p.get_ref()) {
        Some(ParamInDef::Body) => ParamLocation::Body,
        Some(ParamInDef::Query) => ParamLocation::Query,
        None if paging_in_body => ParamLocation::Body,
        None => ParamLocation::Query,
    };
    if param_in == ParamLocation::Body
        && let Some(param) = &def.param
        && let Err((m, h)) = checks::pointer("param", param.get_ref(), false)
    {
        let problem = (format!("{m} (param_in = \"body\")"), h);
        fail(sink, param.span(), "param", problem);
    }
    if let Some(initial) = &def.initial
        && let Err(p) = check_initial(cursor_type, &initial.get_ref().0)
    {
        fail(sink, initial.span(), "initial", p);
    }
    let lookback = match &def.lookback {
        None => None,
        Some(value) => match lookback(cursor_type, value.get_ref()) {
            Ok(l) => Some(l),
            Err(p) => {
                fail(sink, value.span(), "lookback", p);
                None
            }
        },
    };
    let windows = match plan_windows(def, cursor_type, window_use, sink) {
        Ok(windows) => windows,
        Err(()) => {
            ok = false;
            None
        }
    };
    let plan = IncrementalPlan {
        windows,
        cursor_field: def.cursor_field.get_ref().clone(),
        cursor_type,
        param: def.param.as_ref().map(|p| p.get_ref().clone()),
        param_in,
        initial: def.initial.as_ref().map(|i| i.get_ref().0.clone()),
        lookback,
        on_missing_cursor: match def.on_missing_cursor {
            Some(OnMissingCursorDef::Skip) => OnMissingCursor::Skip,
            _ => OnMissingCursor::Error,
        },
    };
    ok.then_some(plan)
}

/// `window` and `end`, for a request that holds `{window.*}`. Err when a
/// problem was reported.
fn plan_windows(
    def: &IncrementalDef,
    cursor_type: CursorType,
    used: WindowUse,
    sink: &mut Sink<'_>,
) -> Result<Option<Windows>, ()> {
    let given = [("window", &def.window), ("end", &def.end)];
    let mut ok = true;
    for (key, value) in given {
        let Some(value) = value else { continue };
        if cursor_type == CursorType::String {
            sink.at(
                value,
                &format!("incremental.{key}"),
                format!("`{key}` is not allowed for cursor_type = \"string\""),
                Some("strings have no distance to cut into windows; remove it, or use a timestamp or integer cursor".into()),
            );
            ok = false;
        } else if !used.end {
            sink.at(
                value,
                &format!("incremental.{key}"),
                format!("`{key}` is given, but no request string holds `{{window.end}}`"),
                Some("send each window's bounds, such as query = { start_time = \"{window.start}\", end_time = \"{window.end}\" }: without the end the server does not know where a window stops".into()),
            );
            ok = false;
        }
    }
    if !ok {
        return Err(());
    }
    if !used.any() {
        return Ok(None);
    }
    if cursor_type == CursorType::String {
        sink.at(
            &def.cursor_type,
            "incremental.cursor_type",
            "`{window.start}` and `{window.end}` need a timestamp or integer cursor",
            Some("use {mark} to send a string cursor's mark".into()),
        );
        return Err(());
    }
    let span = match &def.window {
        None => None,
        Some(value) => match (cursor_type, value.get_ref()) {
            (CursorType::Timestamp, LookbackDef::Text(text)) => {
                match checks::positive_duration("window", text) {
                    Ok(span) => Some(Lookback::Duration(span)),
                    Err((m, h)) => {
                        sink.at(value, "incremental.window", m, h);
                        return Err(());
                    }
                }
            }
            (CursorType::Integer, LookbackDef::Integer(n)) if *n > 0 => Some(Lookback::Integer(*n)),
            _ => {
                let (m, h) = match cursor_type {
                    CursorType::Timestamp => (
                        "`window` must be a duration for cursor_type = \"timestamp\"",
                        "write a duration such as window = \"30d\"",
                    ),
                    _ => (
                        "`window` must be a positive integer for cursor_type = \"integer\"",
                        "write a span such as window = 10000",
                    ),
                };
                sink.at(value, "incremental.window", m, Some(h.into()));
                return Err(());
            }
        },
    };
    let end = match (&def.end, cursor_type) {
        (None, CursorType::Timestamp) => WindowEnd::BeforeNow(std::time::Duration::ZERO),
        (None, _) => WindowEnd::Open,
        (Some(value), CursorType::Timestamp) => match value.get_ref() {
            LookbackDef::Text(text) => match window_end(text) {
                Some(end) => end,
                None => {
                    sink.at(
                        value,
                        "incremental.end",
                        format!("`end` \"{text}\" is not \"now\", \"now-DURATION\" or an RFC 3339 time"),
                        Some("write end = \"now-5m\" to leave the last five minutes for the next run, or a time such as \"2025-01-01T00:00:00Z\"".into()),
                    );
                    return Err(());
                }
            },
            LookbackDef::Integer(_) => {
                sink.at(
                    value,
                    "incremental.end",
                    "`end` must be \"now\", \"now-DURATION\" or an RFC 3339 time for cursor_type = \"timestamp\"",
                    None,
                );
                return Err(());
            }
        },
        (Some(value), _) => match value.get_ref() {
            LookbackDef::Integer(n) => WindowEnd::At(n.to_string()),
            LookbackDef::Text(_) => {
                sink.at(
                    value,
                    "incremental.end",
                    "`end` must be an integer for cursor_type = \"integer\"",
                    Some("write end = 1000000, or leave it out to go on until a window comes back empty".into()),
                );
                return Err(());
            }
        },
    };
    if end == WindowEnd::Open && span.is_none() {
        sink.at(
            &def.cursor_type,
            "incremental.window",
            "`{window.*}` with an integer cursor needs `window` or `end`",
            Some("give window = 10000 (windows go on until one comes back empty) or end = <the last id>".into()),
        );
        return Err(());
    }
    Ok(Some(Windows { span, end }))
}

/// `"now"`, `"now-5m"` or an RFC 3339 time.
fn window_end(text: &str) -> Option<WindowEnd> {
    let text = text.trim();
    if text == "now" {
        return Some(WindowEnd::BeforeNow(std::time::Duration::ZERO));
    }
    if let Some(back) = text.strip_prefix("now-") {
        return humantime::parse_duration(back.trim())
            .ok()
            .map(WindowEnd::BeforeNow);
    }
    checks::timestamp(text).then(|| WindowEnd::At(text.to_string()))
}

pub(crate) fn cursor_type(def: &IncrementalDef) -> CursorType {
    match def.cursor_type.get_ref() {
        CursorTypeDef::Timestamp => CursorType::Timestamp,
        CursorTypeDef::Integer => CursorType::Integer,
        CursorTypeDef::String => CursorType::String,
    }
}

fn check_initial(cursor_type: CursorType, text: &str) -> Result<(), checks::Problem> {
    let fits = match cursor_type {
        CursorType::Timestamp => checks::timestamp(text),
        CursorType::Integer => text.parse::<i64>().is_ok(),
        CursorType::String => true,
    };
    if fits {
        return Ok(());
    }
    let example = match cursor_type {
        CursorType::Timestamp => "an RFC 3339 timestamp such as \"2024-01-01T00:00:00Z\"",
        _ => "an integer such as 0",
    };
    Err((
        format!("`initial` \"{text}\" does not fit cursor_type"),
        Some(format!("write {example}")),
    ))
}

fn lookback(cursor_type: CursorType, value: &LookbackDef) -> Result<Lookback, checks::Problem> {
    match (cursor_type, value) {
        (CursorType::Timestamp, LookbackDef::Text(text)) => {
            checks::duration("lookback", text).map(Lookback::Duration)
        }
        (CursorType::Timestamp, LookbackDef::Integer(_)) => Err((
            "`lookback` must be a duration for cursor_type = \"timestamp\"".into(),
            Some("write a duration such as \"10m\"".into()),
        )),
        (CursorType::Integer, LookbackDef::Integer(n)) if *n >= 0 => Ok(Lookback::Integer(*n)),
        (CursorType::Integer, _) => Err((
            "`lookback` must be a non-negative integer for cursor_type = \"integer\"".into(),
            Some("write a number such as lookback = 100".into()),
        )),
        (CursorType::String, _) => Err((
            "`lookback` is not allowed for cursor_type = \"string\"".into(),
            Some("strings have no distance to step back; remove lookback".into()),
        )),
    }
}

/// The listed values, refused when two name the same stream: each value is
/// a stream's checkpoint key, so `"eu"` twice (or `1` and `"1"`, both the
/// text `1`) would make two streams share one checkpoint and write twice.
fn unique_values(
    values: &toml::Spanned<Vec<ScalarDef>>,
    sink: &mut Sink<'_>,
) -> Option<Vec<String>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut repeated = Vec::new();
    for value in values.get_ref() {
        if !seen.insert(value.0.as_str()) && !repeated.contains(&value.0.as_str()) {
            repeated.push(value.0.as_str());
        }
    }
    if repeated.is_empty() {
        return Some(values.get_ref().iter().map(|v| v.0.clone()).collect());
    }
    let list: Vec<String> = repeated.iter().map(|v| format!("{v:?}")).collect();
    sink.at(
        values,
        "partitions.values",
        format!(
            "`values` lists {} more than once: each value is one stream with its own checkpoint, so a repeated value would be fetched and written twice",
            list.join(", ")
        ),
        Some("list each value once (a number and the same number as a string count as one)".into()),
    );
    None
}

/// `from_job` with `fields = { NAME = "/pointer", ... }`.
fn plan_fields(
    def: &PartitionsDef,
    fields: &toml::Spanned<crate::definition::OrderedMap<toml::Spanned<String>>>,
    sink: &mut Sink<'_>,
) -> Option<PartitionsPlan> {
    let Some(job) = &def.from_job else {
        sink.at(
            fields,
            "partitions.fields",
            "`fields` only applies with `from_job`",
            None,
        );
        return None;
    };
    if let Some(field) = &def.field {
        sink.at(
            field,
            "partitions.field",
            "`field` and `fields` are both given",
            Some(
                "keep `fields` (its placeholders are {partition.NAME}) or `field` ({partition})"
                    .into(),
            ),
        );
        return None;
    }
    if fields.get_ref().0.is_empty() {
        sink.at(
            fields,
            "partitions.fields",
            "`fields` is empty",
            Some("name at least one value, such as fields = { id = \"/id\" }".into()),
        );
        return None;
    }
    let mut ok = true;
    let mut planned = Vec::new();
    for (name, pointer) in &fields.get_ref().0 {
        let key = format!("partitions.fields.{}", name.get_ref());
        if let Err((m, h)) = checks::placeholder_name("field name", name.get_ref()) {
            sink.at(name, &key, m, h);
            ok = false;
        }
        if let Err((m, h)) = checks::parent_pointer("fields", pointer.get_ref()) {
            sink.at(pointer, &key, m, h);
            ok = false;
        }
        planned.push((name.get_ref().clone(), pointer.get_ref().clone()));
    }
    ok.then(|| PartitionsPlan::FromJobFields {
        job: job.get_ref().clone(),
        fields: planned,
        changed_only: changed_only(def),
    })
}

fn changed_only(def: &PartitionsDef) -> bool {
    def.changed_only.as_ref().is_some_and(|c| *c.get_ref())
}

/// `changed_only` counts parent rows written since the last finished pass:
/// `values` and date slices have no rows, and are the same every pass.
fn check_changed_only(def: &PartitionsDef, sink: &mut Sink<'_>) -> bool {
    let Some(flag) = &def.changed_only else {
        return true;
    };
    if def.from_job.is_some() || (def.values.is_none() && def.dates.is_none()) {
        return true;
    }
    let kind = if def.values.is_some() {
        "`values`"
    } else {
        "`dates`"
    };
    sink.at(
        flag,
        "partitions.changed_only",
        format!("`changed_only` only applies with `from_job`, not with {kind}"),
        Some(
            "it keeps the parent rows written since this job's last finished pass; remove it"
                .into(),
        ),
    );
    false
}

pub(crate) fn plan_partitions(def: &PartitionsDef, sink: &mut Sink<'_>) -> Option<PartitionsPlan> {
    let given = [
        def.values.is_some(),
        def.from_job.is_some(),
        def.dates.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        sink.file(
            "partitions",
            "[partitions] needs exactly one of `values`, `from_job` or `dates`",
            None,
        );
        return None;
    }
    if !check_changed_only(def, sink) {
        return None;
    }
    if let (Some(field), None) = (&def.field, &def.from_job) {
        sink.at(
            field,
            "partitions.field",
            "`field` only applies with `from_job`",
            None,
        );
        return None;
    }
    if let Some(fields) = &def.fields {
        return plan_fields(def, fields, sink);
    }
    if let Some(values) = &def.values {
        if values.get_ref().is_empty() {
            sink.at(
                values,
                "partitions.values",
                "`values` is empty",
                Some("list at least one partition".into()),
            );
            return None;
        }
        return unique_values(values, sink).map(PartitionsPlan::Values);
    }
    if let Some(job) = &def.from_job {
        let Some(field) = &def.field else {
            sink.at(
                job,
                "partitions.field",
                "`from_job` needs `field`",
                Some("add field = \"/id\" (a pointer into that job's records)".into()),
            );
            return None;
        };
        checks::parent_pointer("field", field.get_ref())
            .map_err(|(m, h)| sink.at(field, "partitions.field", m, h))
            .ok()?;
        return Some(PartitionsPlan::FromJob {
            job: job.get_ref().clone(),
            field: field.get_ref().clone(),
            changed_only: changed_only(def),
        });
    }
    let dates = def.dates.as_ref()?.get_ref();
    let mut ok = true;
    for (value, key) in [(&dates.from, "from"), (&dates.to, "to")] {
        let text = value.get_ref();
        if !(checks::date_or_timestamp(text) || (key == "to" && text == "now")) {
            sink.at(
                value,
                &format!("partitions.dates.{key}"),
                format!("`{key}` \"{text}\" is not a date"),
                Some("write YYYY-MM-DD or an RFC 3339 timestamp (to may be \"now\")".into()),
            );
            ok = false;
        }
    }
    let step = checks::positive_duration("step", dates.step.get_ref())
        .map_err(|(m, h)| sink.at(&dates.step, "partitions.dates.step", m, h))
        .ok();
    let plan = PartitionsPlan::Dates {
        from: dates.from.get_ref().clone(),
        to: dates.to.get_ref().clone(),
        step: step?,
    };
    ok.then_some(plan)
}
