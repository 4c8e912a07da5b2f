//! One job file -> `JobPlan`: request, records, output and retry here;
//! pagination, incremental and partitions in their own files.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::auth::{duration_or, plan_auth};
use super::checks;
use super::diagnostics::{Diagnostic, Sink};
use super::incremental::{WindowUse, cursor_type, plan_incremental, plan_partitions};
use super::pagination::{check_body_params, params_in_body, plan_pagination};
use super::placeholder::{self, Fillable, Meaning};
use super::template;
use crate::definition::suggest::closest;
use crate::definition::{
    IncrementalDef, JobAuthDef, JobDef, LoadedJob, MethodDef, ModeDef, RecordsDef, RequestDef,
    RetryDef,
};
use crate::plan::{
    AuthPlan, ColumnPlan, HttpMethod, JobPlan, OutputPlan, ParamLocation, RecordsPlan, RequestPlan,
    RetryPlan, WriteMode,
};

/// Largest page body accepted unless `records.max_page_bytes` says otherwise.
pub(crate) const DEFAULT_MAX_PAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Names the job may refer to: `[auth.NAME]`s, other jobs, the
/// environment's variables (`{env.NAME}`) and `[secrets]`.
pub(crate) struct Known<'a> {
    pub auths: &'a BTreeSet<String>,
    pub jobs: &'a BTreeSet<String>,
    pub env: &'a [(String, String)],
    pub secrets: &'a BTreeSet<String>,
}

/// Plans a job; an inline auth goes into `auths` as `job:<name>`.
pub(crate) fn plan_job(
    job: &LoadedJob,
    known: &Known<'_>,
    auths: &mut BTreeMap<String, AuthPlan>,
    sink: &mut Sink<'_>,
) -> Option<JobPlan> {
    let def = &job.def;
    let auth = plan_job_auth(job, known, auths, sink);
    if let Some(schedule) = &def.schedule {
        let _ =
            checks::cron(schedule.get_ref()).map_err(|(m, h)| sink.at(schedule, "schedule", m, h));
    }
    for dep in &def.depends_on {
        check_job_ref(
            dep.get_ref(),
            dep.span(),
            "depends_on",
            &job.name,
            known,
            sink,
        );
    }
    let fields: Vec<String> = def
        .partitions
        .iter()
        .flat_map(|p| p.fields.iter())
        .flat_map(|f| f.get_ref().0.iter())
        .map(|(name, _)| format!("partition.{}", name.get_ref()))
        .collect();
    let partition: Vec<&str> = match &def.partitions {
        None => Vec::new(),
        Some(p) if p.dates.is_some() => vec!["partition.start", "partition.end"],
        Some(p) if p.fields.is_some() => fields.iter().map(String::as_str).collect(),
        Some(_) => vec!["partition"],
    };
    let fillable = Fillable {
        partition: &partition,
        dates: def.partitions.as_ref().is_some_and(|p| p.dates.is_some()),
        mark: def
            .incremental
            .as_ref()
            .map(|i| (cursor_type(i), i.initial.is_some())),
        env: known.env,
        secrets: known.secrets,
        insecure: false,
    };
    let request = plan_request(&def.request, &fillable, sink);
    let method = request.as_ref().map_or(HttpMethod::Get, |r| r.method);
    let pagination = plan_pagination(def.pagination.as_ref(), method, sink);
    let records = plan_records(def.records.as_ref(), &partition, sink);
    let paging_in_body = pagination.as_ref().is_some_and(|p| params_in_body(&p.kind));
    let incremental = def.incremental.as_ref().map(|i| {
        let placed = check_mark_placement(&def.request, i, sink);
        let windows = window_use(&def.request);
        plan_incremental(i, paging_in_body, windows, sink).filter(|_| placed)
    });
    if let (Some(paging_def), Some(paging)) = (&def.pagination, &pagination) {
        let mark_in_body =
            matches!(&incremental, Some(Some(i)) if i.param_in == ParamLocation::Body);
        let mark = def.incremental.as_ref().filter(|_| mark_in_body);
        let param = mark.and_then(|i| i.param.as_ref());
        check_body_params(paging_def, &paging.kind, param, sink);
    }
    let partitions = def.partitions.as_ref().map(|p| plan_partitions(p, sink));
    if let Some(from_job) = def.partitions.as_ref().and_then(|p| p.from_job.as_ref()) {
        check_job_ref(
            from_job.get_ref(),
            from_job.span(),
            "partitions.from_job",
            &job.name,
            known,
            sink,
        );
    }
    check_changed_only_mode(def, sink);
    let has_pk = records.as_ref().is_some_and(|r| !r.primary_key.is_empty());
    let output = plan_output(def, &job.name, has_pk, &partition, sink);
    let retry = plan_retry(def.retry.as_ref(), sink);
    Some(JobPlan {
        name: job.name.clone(),
        file: job.source.path.clone(),
        description: def.description.clone(),
        auth: auth?,
        schedule: def.schedule.as_ref().map(|s| s.get_ref().clone()),
        depends_on: def.depends_on.iter().map(|d| d.get_ref().clone()).collect(),
        tags: def.tags.clone(),
        request: request?,
        pagination: pagination?,
        records: records?,
        incremental: incremental.map_or(Some(None), |i| i.map(Some))?,
        partitions: partitions.map_or(Some(None), |p| p.map(Some))?,
        output: output?,
        retry: retry?,
    })
}

/// `Some(None)`: no auth; `None`: a reported problem.
fn plan_job_auth(
    job: &LoadedJob,
    known: &Known<'_>,
    auths: &mut BTreeMap<String, AuthPlan>,
    sink: &mut Sink<'_>,
) -> Option<Option<String>> {
    let Some(auth) = &job.def.auth else {
        return Some(None);
    };
    match auth.get_ref() {
        JobAuthDef::Named(name) if known.auths.contains(name) => Some(Some(name.clone())),
        JobAuthDef::Named(name) => {
            let hint = match closest(name, known.auths.iter().map(String::as_str)) {
                Some(near) => format!("did you mean `{near}`?"),
                None => {
                    format!("define [auth.{name}] in apisync.toml, or give the auth table inline")
                }
            };
            sink.at(auth, "auth", format!("unknown auth `{name}`"), Some(hint));
            None
        }
        JobAuthDef::Inline(def) => {
            let plan = plan_auth(def, "auth", sink)?;
            let key = format!("job:{}", job.name);
            auths.insert(key.clone(), plan);
            Some(Some(key))
        }
    }
}

/// A replace job's pass swaps in a table of what the pass fetched: with
/// `changed_only`, the children of the changed parents alone, and every
/// other parent's children would be gone.
fn check_changed_only_mode(def: &JobDef, sink: &mut Sink<'_>) {
    let flag = def
        .partitions
        .as_ref()
        .and_then(|p| p.changed_only.as_ref());
    let mode = def.output.as_ref().and_then(|o| o.mode.as_ref());
    if let (Some(flag), Some(mode)) = (flag, mode)
        && *flag.get_ref()
        && *mode.get_ref() == ModeDef::Replace
    {
        sink.at(
            flag,
            "partitions.changed_only",
            "`changed_only` with mode = \"replace\" would swap in a table holding only the children of the parents that changed",
            Some("use mode = \"merge\" (or \"append\"), or remove changed_only".into()),
        );
    }
}

fn check_job_ref(
    name: &str,
    span: std::ops::Range<usize>,
    key: &str,
    this: &str,
    known: &Known<'_>,
    sink: &mut Sink<'_>,
) {
    if name == this {
        sink.at_span(
            span,
            key,
            format!("job \"{name}\" refers to itself in `{key}`"),
            None,
        );
    } else if !known.jobs.contains(name) {
        let hint = closest(name, known.jobs.iter().map(String::as_str)).map_or_else(
            || "job names are the file stems of the jobs folder".to_string(),
            |n| format!("did you mean `{n}`?"),
        );
        sink.at_span(
            span,
            key,
            format!("unknown job `{name}` in `{key}`"),
            Some(hint),
        );
    }
}

/// The mark goes into the request one way: `param` (v1) or `{mark}` in a
/// request string, never both and never neither. False when a problem was
/// reported.
fn check_mark_placement(
    request: &RequestDef,
    incremental: &IncrementalDef,
    sink: &mut Sink<'_>,
) -> bool {
    let placed = window_use(request).any()
        || request_strings(request)
            .into_iter()
            .flat_map(|string| template::placeholders(string.text))
            .any(|slot| Meaning::of(slot.name) == Meaning::Mark);
    match (&incremental.param, placed) {
        (Some(param), true) => {
            sink.at(
                param,
                "incremental.param",
                "`param` is given, but the request already places the mark with `{mark}` or `{window.*}`",
                Some("remove `param` (or the placeholder): the mark is sent once".into()),
            );
            false
        }
        (None, false) => {
            sink.at(
                &incremental.cursor_field,
                "incremental.param",
                "[incremental] does not say how the mark is sent",
                Some("add param = \"updated_since\" (a query or body parameter), or put {mark} in a request string such as query = { filter = \"updated>{mark}\" }".into()),
            );
            false
        }
        _ => true,
    }
}

fn plan_request(
    def: &RequestDef,
    fillable: &Fillable<'_>,
    sink: &mut Sink<'_>,
) -> Option<RequestPlan> {
    let url = checks::url_template("url", def.url.get_ref(), |slot| {
        checks::url_sample(slot, fillable.env)
    })
    .map_err(|(m, h)| sink.at(&def.url, "request.url", m, h));
    let mut ok = url.is_ok();
    let insecure = url.is_ok_and(|url| {
        let refusal = crate::secret::may_carry_credentials(&url, &url.origin());
        refusal == Err(crate::secret::Refusal::PlainHttp)
    });
    let fillable = &Fillable {
        insecure,
        ..*fillable
    };
    let method = match def.method.as_ref().map(|m| *m.get_ref()) {
        Some(MethodDef::Post) => HttpMethod::Post,
        _ => HttpMethod::Get,
    };
    if let (Some(body), HttpMethod::Get) = (&def.body, method) {
        sink.at(
            body,
            "request.body",
            "`body` is given but the method is GET",
            Some("set method = \"POST\" or remove body".into()),
        );
        ok = false;
    }
    let pairs = |map: &crate::definition::OrderedMap<
        toml::Spanned<crate::definition::ScalarDef>,
    >|
     -> Vec<(String, String)> {
        map.0
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), v.get_ref().0.clone()))
            .collect()
    };
    let query = pairs(&def.query);
    let headers = pairs(&def.headers);
    let body = def.body.as_ref().map(|b| b.get_ref().clone());
    ok &= check_placeholders(def, fillable, sink);
    let timeout = match &def.timeout {
        None => Some(Duration::from_secs(30)),
        Some(t) => checks::positive_duration("timeout", t.get_ref())
            .map_err(|(m, h)| sink.at(t, "request.timeout", m, h))
            .ok(),
    };
    let plan = RequestPlan {
        url: def.url.get_ref().clone(),
        method,
        query,
        headers,
        body,
        timeout: timeout?,
        env: placeholder::env_used(
            request_strings(def).into_iter().map(|s| s.text),
            fillable.env,
        ),
        missing_env: missing_env(def, fillable.env, sink),
    };
    ok.then_some(plan)
}

/// One string of the request that may hold placeholders: its key (for
/// messages), its text and where it stands in the file.
struct RequestString<'a> {
    key: String,
    text: &'a str,
    span: std::ops::Range<usize>,
}

/// Every string of the request that may hold placeholders: the URL, query
/// and header values, and the string leaves of the body (located at the
/// body).
/// Which of `{window.start}` and `{window.end}` the request holds.
fn window_use(request: &RequestDef) -> WindowUse {
    let mut used = WindowUse::default();
    for string in request_strings(request) {
        for slot in template::placeholders(string.text) {
            match Meaning::of(slot.name) {
                Meaning::WindowStart => used.start = true,
                Meaning::WindowEnd => used.end = true,
                _ => {}
            }
        }
    }
    used
}

fn request_strings(def: &RequestDef) -> Vec<RequestString<'_>> {
    let mut strings = vec![RequestString {
        key: "request.url".into(),
        text: def.url.get_ref(),
        span: def.url.span(),
    }];
    for (table, map) in [("query", &def.query), ("headers", &def.headers)] {
        for (name, value) in &map.0 {
            strings.push(RequestString {
                key: format!("request.{table}.{}", name.get_ref()),
                text: &value.get_ref().0,
                span: value.span(),
            });
        }
    }
    if let Some(body) = &def.body {
        let mut texts = Vec::new();
        placeholder::json_strings(body.get_ref(), &mut texts);
        strings.extend(texts.into_iter().map(|text| RequestString {
            key: "request.body".into(),
            text,
            span: body.span(),
        }));
    }
    strings
}

/// Every placeholder of the request must be one the job fills, and none
/// but `{env.*}` may stand in the URL's origin. False when a problem was
/// reported.
fn check_placeholders(def: &RequestDef, known: &Fillable<'_>, sink: &mut Sink<'_>) -> bool {
    let mut ok = true;
    for string in request_strings(def) {
        let url = string.key == "request.url";
        for (message, hint) in placeholder::check(&string.key, string.text, known, url) {
            sink.at_span(string.span.clone(), &string.key, message, hint);
            ok = false;
        }
    }
    ok
}

/// The located problems of `{env.NAME}` placeholders whose variable is
/// not set (see `RequestPlan::missing_env`).
fn missing_env(def: &RequestDef, env: &[(String, String)], sink: &Sink<'_>) -> Vec<Diagnostic> {
    request_strings(def)
        .into_iter()
        .flat_map(|string| {
            placeholder::missing_env(&string.key, string.text, env)
                .into_iter()
                .map(move |(message, hint)| {
                    sink.located(string.span.clone(), &string.key, message, hint)
                })
        })
        .collect()
}

/// A `primary_key` part or column that is a partition placeholder:
/// Some(Ok(name)) when the job's partitions define it, Some(Err) (reported)
/// when it names one they do not, None when it is not a placeholder.
fn partition_part(
    part: &toml::Spanned<String>,
    partition: &[&str],
    key: &str,
    sink: &mut Sink<'_>,
) -> Option<Result<String, ()>> {
    if !part.get_ref().starts_with('{') {
        return None;
    }
    match placeholder::partition_placeholder(part.get_ref()) {
        Some(name) if partition.contains(&name) => Some(Ok(name.to_string())),
        _ => {
            let have = match partition {
                [] => "this job has no [partitions]".to_string(),
                names => format!(
                    "this job's partition values are {}",
                    names
                        .iter()
                        .map(|n| format!("{{{n}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            sink.at(
                part,
                key,
                format!("`{}` is not a partition value of this job", part.get_ref()),
                Some(format!("{have}; a JSON pointer starts with \"/\"")),
            );
            Some(Err(()))
        }
    }
}

fn plan_records(
    def: Option<&RecordsDef>,
    partition: &[&str],
    sink: &mut Sink<'_>,
) -> Option<RecordsPlan> {
    let Some(def) = def else {
        return Some(RecordsPlan {
            path: String::new(),
            primary_key: Vec::new(),
            partition_key: Vec::new(),
            error_path: None,
            error_retry: false,
            max_page_bytes: DEFAULT_MAX_PAGE_BYTES,
            single: false,
        });
    };
    let mut ok = true;
    let mut pointer =
        |value: &toml::Spanned<String>, key: &str, allow_empty: bool, sink: &mut Sink<'_>| {
            if let Err((m, h)) = checks::pointer(key, value.get_ref(), allow_empty) {
                sink.at(value, &format!("records.{key}"), m, h);
                ok = false;
            }
            value.get_ref().clone()
        };
    let path = def
        .path
        .as_ref()
        .map(|p| pointer(p, "path", true, sink))
        .unwrap_or_default();
    let mut primary_key = Vec::new();
    let mut partition_key = Vec::new();
    let mut parts_ok = true;
    for (at, part) in def.primary_key.iter().enumerate() {
        match partition_part(part, partition, "records.primary_key", sink) {
            Some(Ok(name)) => partition_key.push((at, name)),
            Some(Err(())) => parts_ok = false,
            None => primary_key.push(pointer(part, "primary_key", false, sink)),
        }
    }
    if primary_key.is_empty() && !partition_key.is_empty() {
        sink.at(
            &def.primary_key[0],
            "records.primary_key",
            "`primary_key` has no part read from the record",
            Some("add a pointer such as \"/id\": the partition's values are the same for every record of a stream".into()),
        );
        parts_ok = false;
    }
    let error_path = def
        .error_path
        .as_ref()
        .map(|p| pointer(p, "error_path", false, sink));
    let max_page_bytes = def
        .max_page_bytes
        .as_ref()
        .map_or(DEFAULT_MAX_PAGE_BYTES, |m| *m.get_ref());
    if let Some(at) = def.max_page_bytes.as_ref().filter(|m| *m.get_ref() == 0) {
        sink.at(
            at,
            "records.max_page_bytes",
            "`max_page_bytes` must be more than zero",
            None,
        );
        ok = false;
    }
    let plan = RecordsPlan {
        path,
        primary_key,
        partition_key,
        error_path,
        error_retry: def.error_retry.unwrap_or(false),
        max_page_bytes,
        single: def.single.unwrap_or(false),
    };
    (ok && parts_ok).then_some(plan)
}

/// Default mode: merge when there is a primary key, append when not.
fn plan_output(
    def: &JobDef,
    job: &str,
    has_pk: bool,
    partition: &[&str],
    sink: &mut Sink<'_>,
) -> Option<OutputPlan> {
    let output = def.output.as_ref();
    let mut ok = true;
    let table = match output.and_then(|o| o.table.as_ref()) {
        Some(t) => {
            ok &= checks::table_name(t.get_ref())
                .map_err(|(m, h)| sink.at(t, "output.table", m, h))
                .is_ok();
            t.get_ref().clone()
        }
        // The job's name (its file's name) becomes the table name: a job
        // file called `_apisync_runs.toml` must not write apisync's table.
        None => {
            ok &= checks::table_name(job)
                .map_err(|(m, h)| {
                    let hint = h.map(|h| {
                        format!(
                            "{h}: the table is named after the job unless [output] sets `table`"
                        )
                    });
                    sink.file("output.table", m, hint)
                })
                .is_ok();
            job.to_string()
        }
    };
    let mode = match output.and_then(|o| o.mode.as_ref()) {
        Some(m) => match m.get_ref() {
            ModeDef::Merge if !has_pk => {
                sink.at(
                    m,
                    "output.mode",
                    "mode = \"merge\" needs a primary key",
                    Some(
                        "add primary_key = [\"/id\"] to [records], or use mode = \"append\"".into(),
                    ),
                );
                ok = false;
                WriteMode::Merge
            }
            ModeDef::Merge => WriteMode::Merge,
            ModeDef::Append => WriteMode::Append,
            // A replace pass swaps in exactly what it fetched; an incremental
            // pass fetches only what changed since the mark, so the swap
            // would empty the table of everything that did not change.
            ModeDef::Replace if def.incremental.is_some() => {
                sink.at(
                    m,
                    "output.mode",
                    "mode = \"replace\" cannot be combined with [incremental]: the second run would fetch only what changed and swap that in, emptying the table of everything else",
                    Some(
                        "use mode = \"merge\" (with a primary key) to keep the incremental sync, or remove [incremental] to fetch everything on every run".into(),
                    ),
                );
                ok = false;
                WriteMode::Replace
            }
            ModeDef::Replace => WriteMode::Replace,
        },
        None if has_pk => WriteMode::Merge,
        None => WriteMode::Append,
    };
    let mut columns = Vec::new();
    for (name, pointer) in output.map(|o| o.columns.0.as_slice()).unwrap_or_default() {
        let key = format!("output.columns.{}", name.get_ref());
        if let Err((m, h)) = checks::column_name(name.get_ref()) {
            sink.at(name, &key, m, h);
            ok = false;
        }
        match partition_part(pointer, partition, &key, sink) {
            Some(Ok(_)) => {}
            Some(Err(())) => ok = false,
            None => {
                if let Err((m, h)) = checks::pointer(name.get_ref(), pointer.get_ref(), false) {
                    sink.at(pointer, &key, m, h);
                    ok = false;
                }
            }
        }
        columns.push(ColumnPlan {
            name: name.get_ref().clone(),
            pointer: pointer.get_ref().clone(),
        });
    }
    ok.then_some(OutputPlan {
        table,
        mode,
        columns,
    })
}

fn plan_retry(def: Option<&RetryDef>, sink: &mut Sink<'_>) -> Option<RetryPlan> {
    let defaults = RetryPlan::default();
    let Some(def) = def else {
        return Some(defaults);
    };
    let max_attempts = match &def.max_attempts {
        Some(m) if *m.get_ref() == 0 => {
            sink.at(
                m,
                "retry.max_attempts",
                "`max_attempts` must be at least 1",
                Some("1 means no retries".into()),
            );
            None
        }
        Some(m) => Some(*m.get_ref()),
        None => Some(defaults.max_attempts),
    };
    let initial_backoff = duration_or(
        &def.initial_backoff,
        "initial_backoff",
        defaults.initial_backoff,
        "retry",
        sink,
    );
    let max_backoff = duration_or(
        &def.max_backoff,
        "max_backoff",
        defaults.max_backoff,
        "retry",
        sink,
    );
    let max_elapsed = duration_or(
        &def.max_elapsed,
        "max_elapsed",
        defaults.max_elapsed,
        "retry",
        sink,
    );
    Some(RetryPlan {
        max_attempts: max_attempts?,
        initial_backoff: initial_backoff?,
        max_backoff: max_backoff?,
        max_elapsed: max_elapsed?,
    })
}
