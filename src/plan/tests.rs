//! Table-driven tests: TOML strings in, diagnostics (file, line, column,
//! message, hint) or plans out.

use std::path::Path;

use super::*;
use crate::test_support::TestProject;

const OK_REQUEST: &str = "[request]\nurl = \"https://api.example.com/v1/items\"\n";

/// Writes a project into a temp dir and loads it with the given env.
fn load(
    config: Option<&str>,
    jobs: &[(&str, &str)],
    env: &[(&str, &str)],
    overrides: &SettingsOverrides,
) -> (TestProject, Result<Loaded, Diagnostics>) {
    let mut project = TestProject::new()
        .config(config.unwrap_or(""))
        .overrides(overrides.clone());
    for (name, text) in jobs {
        project = project.job(name, text);
    }
    for (name, value) in env {
        project = project.env(name, value);
    }
    let result = project.load();
    (project, result)
}

fn job_errors(config: &str, job: &str) -> Vec<(usize, usize, String, Option<String>)> {
    let (_dir, result) = load(
        Some(config),
        &[("orders", job), ("customers", OK_REQUEST)],
        &[],
        &SettingsOverrides::default(),
    );
    let diags = result.expect_err("expected problems").0;
    diags
        .iter()
        .map(|d| (d.line, d.column, d.message.clone(), d.hint.clone()))
        .collect()
}

const CONFIG: &str = "[auth.acme]\ntype = \"bearer\"\ntoken = { env = \"ACME\" }\n";

#[test]
#[allow(clippy::type_complexity)] // a table of expectations reads best inline
fn each_error_class_is_located_and_explained() {
    let cases: &[(&str, String, (usize, usize, &str, Option<&str>))] = &[
        ("bad url", "[request]\nurl = \"htp:/x\"\n".into(), (2, 7, "`url` \"htp:/x\" must be an http or https URL", None)),
        ("bad duration", format!("{OK_REQUEST}timeout = \"30 parsecs\"\n"), (3, 11, "`timeout` is not a duration: unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)", Some("write a duration such as \"30s\", \"10m\" or \"1d\""))),
        ("body with GET", format!("{OK_REQUEST}body = {{ a = 1 }}\n"), (3, 8, "`body` is given but the method is GET", Some("set method = \"POST\" or remove body"))),
        ("partition without partitions", "[request]\nurl = \"https://x.example/{partition}\"\n".into(), (2, 7, "`{partition}` is used in `request.url` but the job has no [partitions]", Some("add [partitions] or remove the placeholder"))),
        ("unknown auth", format!("auth = \"acm\"\n{OK_REQUEST}"), (1, 8, "unknown auth `acm`", Some("did you mean `acme`?"))),
        ("unknown dependency", format!("depends_on = [\"custmers\"]\n{OK_REQUEST}"), (1, 15, "unknown job `custmers` in `depends_on`", Some("did you mean `customers`?"))),
        ("bad cron", format!("schedule = \"*/15 * * *\"\n{OK_REQUEST}"), (1, 12, "`schedule` \"*/15 * * *\" is not a cron expression: Invalid pattern: Pattern must have 5 fields when seconds are disallowed.", Some("write 5 fields, minute hour day-of-month month day-of-week, such as \"*/15 * * * *\" (UTC)"))),
        ("merge without pk", format!("{OK_REQUEST}[output]\nmode = \"merge\"\n"), (4, 8, "mode = \"merge\" needs a primary key", Some("add primary_key = [\"/id\"] to [records], or use mode = \"append\""))),
        ("cursor without param", format!("{OK_REQUEST}[pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\n"), (4, 8, "pagination type \"cursor\" needs `cursor_param`", Some("name the query parameter that carries the cursor, such as cursor_param = \"cursor\""))),
        ("key of another type", format!("{OK_REQUEST}[pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"c\"\nlimit = 10\n"), (7, 9, "`limit` is a key of pagination type \"offset\", but this pagination is type = \"cursor\"", Some("remove `limit` or set type = \"offset\""))),
        ("pointer without slash", format!("{OK_REQUEST}[records]\npath = \"data\"\n"), (4, 8, "`path` \"data\" is not a JSON pointer", Some("JSON pointers start with \"/\", such as \"/data\""))),
        ("bad table", format!("{OK_REQUEST}[output]\ntable = \"acme-orders\"\n"), (4, 9, "table name \"acme-orders\" is not a valid identifier", Some("use letters, digits and `_`, not starting with a digit"))),
        ("reserved column", format!("{OK_REQUEST}[output]\ncolumns = {{ _data = \"/x\" }}\n"), (4, 13, "column name \"_data\" starts with `_`, which is reserved", Some("apisync writes _pk _data _synced_at _run_id _partition itself; rename the column"))),
        ("partition column", format!("{OK_REQUEST}[output]\ncolumns = {{ _partition = \"/x\" }}\n"), (4, 13, "column name \"_partition\" starts with `_`, which is reserved", Some("apisync writes _pk _data _synced_at _run_id _partition itself; rename the column"))),
        ("lookback integer for timestamp", format!("{OK_REQUEST}[incremental]\ncursor_field = \"/u\"\ncursor_type = \"timestamp\"\nparam = \"since\"\nlookback = 10\n"), (7, 12, "`lookback` must be a duration for cursor_type = \"timestamp\"", Some("write a duration such as \"10m\""))),
        ("lookback for string", format!("{OK_REQUEST}[incremental]\ncursor_field = \"/u\"\ncursor_type = \"string\"\nparam = \"since\"\nlookback = \"1m\"\n"), (7, 12, "`lookback` is not allowed for cursor_type = \"string\"", Some("strings have no distance to step back; remove lookback"))),
        ("initial not a timestamp", format!("{OK_REQUEST}[incremental]\ncursor_field = \"/u\"\ncursor_type = \"timestamp\"\nparam = \"since\"\ninitial = \"yesterday\"\n"), (7, 11, "`initial` \"yesterday\" does not fit cursor_type", Some("write an RFC 3339 timestamp such as \"2024-01-01T00:00:00Z\""))),
        ("bad dates", "[request]\nurl = \"https://x.example/{partition.start}\"\n[partitions]\ndates = { from = \"2024-13-01\", to = \"now\", step = \"1d\" }\n".into(), (4, 18, "`from` \"2024-13-01\" is not a date", Some("write YYYY-MM-DD or an RFC 3339 timestamp (to may be \"now\")"))),
        ("self dependency", format!("depends_on = [\"orders\"]\n{OK_REQUEST}"), (1, 15, "job \"orders\" refers to itself in `depends_on`", None)),
        ("replace with incremental", format!("{OK_REQUEST}[records]\nprimary_key = [\"/id\"]\n[incremental]\ncursor_field = \"/u\"\ncursor_type = \"timestamp\"\nparam = \"since\"\n[output]\nmode = \"replace\"\n"), (10, 8, "mode = \"replace\" cannot be combined with [incremental]: the second run would fetch only what changed and swap that in, emptying the table of everything else", Some("use mode = \"merge\" (with a primary key) to keep the incremental sync, or remove [incremental] to fetch everything on every run"))),
        ("repeated partition values", "[request]\nurl = \"https://x.example/{partition}\"\n[partitions]\nvalues = [\"eu\", \"us\", \"eu\", 1, \"1\"]\n".into(), (4, 10, "`values` lists \"eu\", \"1\" more than once: each value is one stream with its own checkpoint, so a repeated value would be fetched and written twice", Some("list each value once (a number and the same number as a string count as one)"))),
        ("changed_only with values", "[request]\nurl = \"https://x.example/{partition}\"\n[partitions]\nvalues = [\"eu\"]\nchanged_only = true\n".into(), (5, 16, "`changed_only` only applies with `from_job`, not with `values`", Some("it keeps the parent rows written since this job's last finished pass; remove it"))),
        ("changed_only with dates", "[request]\nurl = \"https://x.example/{partition.start}\"\n[partitions]\ndates = { from = \"2024-01-01\", to = \"now\", step = \"1d\" }\nchanged_only = true\n".into(), (5, 16, "`changed_only` only applies with `from_job`, not with `dates`", Some("it keeps the parent rows written since this job's last finished pass; remove it"))),
        ("changed_only with replace", "[request]\nurl = \"https://x.example/{partition.id}\"\n[partitions]\nfrom_job = \"customers\"\nfields = { id = \"/id\" }\nchanged_only = true\n[output]\nmode = \"replace\"\n".into(), (6, 16, "`changed_only` with mode = \"replace\" would swap in a table holding only the children of the parents that changed", Some("use mode = \"merge\" (or \"append\"), or remove changed_only"))),
        ("auth key of another type", format!("auth = {{ type = \"bearer\", token = {{ env = \"T\" }}, username = \"u\" }}\n{OK_REQUEST}"), (1, 61, "`username` does not apply to auth type \"bearer\"", Some("`username` belongs to type \"basic\"; keys of \"bearer\": token"))),
    ];
    for (name, job, expected) in cases {
        let got = job_errors(CONFIG, job);
        let expected = (
            expected.0,
            expected.1,
            expected.2.to_string(),
            expected.3.map(str::to_string),
        );
        assert_eq!(got, vec![expected], "case {name}");
    }
}

#[test]
#[allow(clippy::type_complexity)] // a table of expectations reads best inline
fn header_cursors_body_parameters_and_stop_values_are_checked() {
    const POST: &str = "[request]\nurl = \"https://api.example.com/v1/items\"\nmethod = \"POST\"\n";
    let cases: &[(&str, String, (usize, usize, &str, Option<&str>))] = &[
        (
            "header cursor without its header",
            format!(
                "{OK_REQUEST}[pagination]\ntype = \"cursor\"\ncursor_from = \"header\"\ncursor_param = \"c\"\n"
            ),
            (
                5,
                15,
                "cursor_from = \"header\" needs `cursor_header`",
                Some(
                    "name the response header that carries the next cursor, such as cursor_header = \"X-Next-Cursor\"",
                ),
            ),
        ),
        (
            "header cursor and cursor_path",
            format!(
                "{OK_REQUEST}[pagination]\ntype = \"cursor\"\ncursor_from = \"header\"\ncursor_header = \"X-Next-Cursor\"\ncursor_path = \"/next\"\ncursor_param = \"c\"\n"
            ),
            (
                7,
                15,
                "`cursor_path` is given but cursor_from = \"header\" reads the cursor from a header",
                Some("remove cursor_path, or remove cursor_from and cursor_header"),
            ),
        ),
        (
            "cursor_header without cursor_from",
            format!(
                "{OK_REQUEST}[pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"c\"\ncursor_header = \"X-Next-Cursor\"\n"
            ),
            (
                7,
                17,
                "`cursor_header` is given but the cursor is not read from a header",
                Some("add cursor_from = \"header\" or remove cursor_header"),
            ),
        ),
        (
            "offset in the body of a GET",
            format!("{OK_REQUEST}[pagination]\ntype = \"offset\"\nparam_in = \"body\"\n"),
            (
                5,
                12,
                "param_in = \"body\" needs a request body, but the method is GET",
                Some("set method = \"POST\" in [request]"),
            ),
        ),
        (
            "page in the body of a GET",
            format!("{OK_REQUEST}[pagination]\ntype = \"page\"\nparam_in = \"body\"\n"),
            (
                5,
                12,
                "param_in = \"body\" needs a request body, but the method is GET",
                Some("set method = \"POST\" in [request]"),
            ),
        ),
        (
            "body parameter not a pointer",
            format!(
                "{POST}[pagination]\ntype = \"offset\"\nparam_in = \"body\"\noffset_param = \"from\"\n"
            ),
            (
                7,
                16,
                "`offset_param` \"from\" is not a JSON pointer (param_in = \"body\")",
                Some("JSON pointers start with \"/\", such as \"/from\""),
            ),
        ),
        (
            "stop_path without stop_value",
            format!("{OK_REQUEST}[pagination]\ntype = \"page\"\nstop_path = \"/end_of_stream\"\n"),
            (
                5,
                13,
                "`stop_path` is given without `stop_value`",
                Some("add the value that ends pagination, such as stop_value = true"),
            ),
        ),
        (
            "cursor header that is not a header name",
            format!(
                "{OK_REQUEST}[pagination]\ntype = \"cursor\"\ncursor_from = \"header\"\ncursor_header = \"X Next\"\ncursor_param = \"c\"\n"
            ),
            (
                6,
                17,
                "`cursor_header` \"X Next\" is not a valid HTTP header name",
                Some(
                    "write the header's name alone, such as cursor_header = \"X-Next-Cursor\" (no spaces, no colon)",
                ),
            ),
        ),
        (
            "cursor header that carries cookies",
            format!(
                "{OK_REQUEST}[pagination]\ntype = \"cursor\"\ncursor_from = \"header\"\ncursor_header = \"Set-Cookie\"\ncursor_param = \"c\"\n"
            ),
            (
                6,
                17,
                "`cursor_header` \"Set-Cookie\" carries credentials or cookies, not a cursor",
                Some("name the header the API documents for the next page's cursor"),
            ),
        ),
        (
            "stop value that is a TOML datetime",
            format!(
                "{OK_REQUEST}[pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"c\"\nstop_path = \"/end\"\nstop_value = 2024-01-01T00:00:00Z\n"
            ),
            (
                8,
                14,
                "`stop_value` is a TOML date or time, which a JSON body never holds",
                Some(
                    "quote it as the string the API sends, such as stop_value = \"2024-01-01T00:00:00Z\"",
                ),
            ),
        ),
        (
            "body parameters inside each other",
            format!(
                "{POST}[pagination]\ntype = \"offset\"\nparam_in = \"body\"\noffset_param = \"/paging\"\nlimit_param = \"/paging/size\"\n"
            ),
            (
                8,
                15,
                "`pagination.limit_param` \"/paging/size\" and `pagination.offset_param` \"/paging\" write the same place in the request body: one would replace the other",
                Some("give each parameter its own JSON pointer, neither inside the other"),
            ),
        ),
        (
            "the mark inside a body parameter",
            format!(
                "{POST}[pagination]\ntype = \"offset\"\nparam_in = \"body\"\noffset_param = \"/filter\"\n[incremental]\ncursor_field = \"/u\"\ncursor_type = \"timestamp\"\nparam = \"/filter/since\"\n"
            ),
            (
                11,
                9,
                "`incremental.param` \"/filter/since\" and `pagination.offset_param` \"/filter\" write the same place in the request body: one would replace the other",
                Some("give each parameter its own JSON pointer, neither inside the other"),
            ),
        ),
        (
            "stop_value without stop_path",
            format!(
                "{OK_REQUEST}[pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"c\"\nstop_value = true\n"
            ),
            (
                7,
                14,
                "`stop_value` is given without `stop_path`",
                Some("add the JSON pointer to compare, such as stop_path = \"/end_of_stream\""),
            ),
        ),
    ];
    for (name, job, expected) in cases {
        let got = job_errors(CONFIG, job);
        let expected = (
            expected.0,
            expected.1,
            expected.2.to_string(),
            expected.3.map(str::to_string),
        );
        assert_eq!(got, vec![expected], "case {name}");
    }
}

#[test]
fn every_problem_of_every_file_comes_in_one_pass() {
    let config = "concurrency = 2\n[hosts.\"api.example.com\"]\nrate_limit = \"20/day\"\n";
    let a = "[request]\nurl = \"nope\"\ntimeout = \"x\"\n";
    let b = "[request]\nurl = \"https://x.example\"\n[pagniation]\n";
    let c = "depends_on = [\"d\"]\n[request]\nurl = \"https://x.example\"\n";
    let d = "depends_on = [\"c\"]\n[request]\nurl = \"https://x.example\"\n";
    let (_dir, result) = load(
        Some(config),
        &[("a", a), ("b", b), ("c", c), ("d", d)],
        &[],
        &SettingsOverrides::default(),
    );
    let diags = result.unwrap_err();
    let found: Vec<(String, Option<String>, usize, usize)> = diags
        .0
        .iter()
        .map(|d| {
            (
                d.file.file_name().unwrap().to_string_lossy().into_owned(),
                d.job.clone(),
                d.line,
                d.column,
            )
        })
        .collect();
    let job = |s: &str| Some(s.to_string());
    assert_eq!(
        found,
        vec![
            ("apisync.toml".into(), None, 3, 14),
            ("a.toml".into(), job("a"), 2, 7),
            ("a.toml".into(), job("a"), 3, 11),
            ("b.toml".into(), job("b"), 3, 2),
            ("c.toml".into(), job("c"), 1, 15),
        ]
    );
    assert!(
        diags.0[4].message.contains("depends_on cycle: c -> d -> c"),
        "{}",
        diags.0[4].message
    );
    assert!(
        diags.to_string().ends_with("5 errors in 4 files"),
        "{diags}"
    );
}

#[test]
fn defaults_fill_the_plan() {
    let job = "[request]\nurl = \"https://x.example\"\n[pagination]\ntype = \"offset\"\n[records]\nprimary_key = [\"/id\"]\n";
    let (dir, result) = load(None, &[("orders", job)], &[], &SettingsOverrides::default());
    let loaded = result.unwrap();
    let plan = &loaded.plan;
    assert_eq!(
        plan.settings.database,
        crate::plan::Database::sqlite(dir.path().join("apisync.db"))
    );
    assert_eq!(
        (plan.settings.concurrency, plan.settings.job_concurrency),
        (8, 4)
    );
    let job = &plan.jobs[0];
    assert_eq!(job.request.timeout, std::time::Duration::from_secs(30));
    assert_eq!(
        job.output,
        OutputPlan {
            table: "orders".into(),
            mode: WriteMode::Merge,
            columns: vec![]
        }
    );
    assert_eq!(job.retry, RetryPlan::default());
    assert_eq!(job.records.max_page_bytes, 64 * 1024 * 1024);
    assert_eq!(
        job.pagination.kind,
        PaginationKind::Offset {
            offset_param: "offset".into(),
            limit_param: "limit".into(),
            limit: 100,
            total_path: None,
            total_header: None,
            param_in: ParamLocation::Query,
        }
    );
}

#[test]
fn settings_layer_file_then_env_then_flags_and_warn_strays() {
    let config = "database = \"data/file.db\"\nconcurrency = 2\njob_concurrency = 3\n";
    let env = [
        ("APISYNC_CONCURRENCY", "5"),
        ("APISYNC_JOB_CONCURRENCY", "6"),
        ("APISYNC_DATABSE", "x"),
        ("APISYNC_LOG_FORMAT", "json"),
        ("HOME", "/root"),
    ];
    let flags = SettingsOverrides {
        job_concurrency: Some(7),
        ..Default::default()
    };
    let (dir, result) = load(Some(config), &[], &env, &flags);
    let loaded = result.unwrap();
    let settings = &loaded.plan.settings;
    assert_eq!(
        settings.database,
        crate::plan::Database::sqlite(dir.path().join("data/file.db"))
    );
    assert_eq!(settings.concurrency, 5, "env beats file");
    assert_eq!(settings.job_concurrency, 7, "flag beats env");
    assert_eq!(
        loaded.warnings,
        vec!["environment: unknown variable `APISYNC_DATABSE` is ignored (hint: did you mean `APISYNC_DATABASE`?)".to_string()]
    );
    let (_dir, result) = load(
        Some(config),
        &[],
        &[("APISYNC_CONCURRENCY", "many")],
        &SettingsOverrides::default(),
    );
    let diags = result.unwrap_err();
    assert_eq!(
        diags.0[0].message,
        "`APISYNC_CONCURRENCY` \"many\" is not a number"
    );
}

#[test]
fn a_postgres_url_in_the_file_or_environment_selects_postgres_and_stays_redacted() {
    let config = "database = \"postgres://app:file-pw@db:5432/sync\"\n";
    let (_dir, result) = load(Some(config), &[], &[], &SettingsOverrides::default());
    let database = result.unwrap().plan.settings.database;
    assert!(matches!(database, crate::plan::Database::Postgres(_)));
    assert_eq!(database.to_string(), "postgres://app:***@db:5432/sync");
    assert!(!format!("{database:?}").contains("file-pw"));

    let env = [("APISYNC_DATABASE", "postgresql://app:env-pw@db/other")];
    let (_dir, result) = load(Some(config), &[], &env, &SettingsOverrides::default());
    let database = result.unwrap().plan.settings.database;
    assert_eq!(database.to_string(), "postgresql://app:***@db/other");

    let bad = "database = \"postgres://app:bad-pw@db/x?sslmode=verify-full\"\n";
    let (_dir, result) = load(Some(bad), &[], &[], &SettingsOverrides::default());
    let diags = result.unwrap_err();
    let text = format!("{:?}", diags.0);
    assert!(
        diags.0[0]
            .message
            .contains("sslmode \"verify-full\" is not supported"),
        "{text}"
    );
    assert!(!text.contains("bad-pw"), "{text}");
}

#[test]
fn secrets_resolve_to_sources_and_plain_ones_are_warned_without_value() {
    let config = "[auth.a]\ntype = \"basic\"\nusername = { file = \"secrets/user\" }\npassword = \"hunter2\"\n";
    let job = format!("auth = \"a\"\n{OK_REQUEST}");
    let (dir, result) = load(
        Some(config),
        &[("orders", &job)],
        &[],
        &SettingsOverrides::default(),
    );
    let loaded = result.unwrap();
    let Some(AuthPlan::Basic { username, .. }) = loaded.plan.auths.get("a") else {
        panic!("no basic auth")
    };
    assert_eq!(
        *username,
        SecretSource::File(dir.path().join("secrets/user"))
    );
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].contains(":4:12: `auth.a.password` is written into the file"),
        "{:?}",
        loaded.warnings
    );
    assert!(!format!("{loaded:?}").contains("hunter2"));
}

#[test]
fn display_matches_the_documented_shape() {
    let d = Diagnostic {
        file: Path::new("jobs/orders.toml").into(),
        line: 7,
        column: 1,
        job: Some("orders".into()),
        key: "pagniation".into(),
        message: "unknown key `pagniation`".into(),
        hint: Some("did you mean `pagination`?".into()),
    };
    assert_eq!(
        d.to_string(),
        "jobs/orders.toml:7:1: job \"orders\": unknown key `pagniation` (hint: did you mean `pagination`?)"
    );
    assert_eq!(
        Diagnostics(vec![d]).to_string().lines().last(),
        Some("1 error in 1 file")
    );
}

#[test]
fn the_mark_goes_into_the_body_when_the_paging_parameters_do() {
    // Beside body paging, a mark sent as a query key named "/since" would
    // be ignored by the server: every run would fetch everything.
    let plan = crate::test_support::job_plan(
        "[request]\nurl = \"https://api.example.com/v1/items\"\nmethod = \"POST\"\n\
         [pagination]\ntype = \"page\"\nparam_in = \"body\"\npage_param = \"/paging/page\"\n\
         [incremental]\ncursor_field = \"/u\"\ncursor_type = \"timestamp\"\nparam = \"/since\"\n",
    );
    let incremental = plan.incremental.expect("incremental planned");
    assert_eq!(incremental.param_in, ParamLocation::Body);
}

#[test]
fn windows_and_their_end_are_checked_where_written() {
    const INC: &str = "[incremental]\ncursor_field = \"/t\"\ncursor_type = \"timestamp\"\ninitial = \"2024-01-01T00:00:00Z\"\n";
    let windowed = |query: &str, extra: &str| {
        format!(
            "[request]\nurl = \"https://api.example.com/v1/items\"\nquery = {{ {query} }}\n{INC}{extra}"
        )
    };
    let both = "s = \"{window.start:epoch}\", e = \"{window.end:epoch}\"";
    let cases: Vec<(&str, String, (usize, usize, &str))> = vec![
        (
            "window but no {window.end}",
            windowed("s = \"{window.start}\"", "window = \"30d\"\n"),
            (8, 10, "`window` is given, but no request string holds `{window.end}`"),
        ),
        (
            "window not a duration",
            windowed(both, "window = \"a month\"\n"),
            (8, 10, "`window` is not a duration"),
        ),
        (
            "window as an integer on a timestamp",
            windowed(both, "window = 30\n"),
            (8, 10, "`window` must be a duration for cursor_type = \"timestamp\""),
        ),
        (
            "end that is not a time",
            windowed(both, "end = \"yesterday\"\n"),
            (8, 7, "`end` \"yesterday\" is not \"now\", \"now-DURATION\" or an RFC 3339 time"),
        ),
        (
            "param and a window placeholder",
            windowed(both, "param = \"since\"\n"),
            (8, 9, "`param` is given, but the request already places the mark"),
        ),
        (
            "window placeholder without incremental",
            "[request]\nurl = \"https://api.example.com/v1/items\"\nquery = { s = \"{window.start}\" }\n".into(),
            (3, 15, "`{window.start}` is used in `request.query.s` but the job has no [incremental]"),
        ),
        (
            "integer cursor without window or end",
            windowed(both, "").replace("\"timestamp\"", "\"integer\"").replace("\"2024-01-01T00:00:00Z\"", "0"),
            (6, 15, "`{window.*}` with an integer cursor needs `window` or `end`"),
        ),
        (
            "string cursor",
            windowed(both, "").replace("\"timestamp\"", "\"string\"").replace("\"2024-01-01T00:00:00Z\"", "\"a\""),
            (6, 15, "`{window.start}` and `{window.end}` need a timestamp or integer cursor"),
        ),
    ];
    for (what, job, (line, column, message)) in cases {
        let errors = job_errors("", &job);
        assert!(
            errors
                .iter()
                .any(|(l, c, m, _)| (*l, *c) == (line, column) && m.starts_with(message)),
            "{what}: {errors:#?}"
        );
    }
    // A good one plans its windows.
    let (_dir, loaded) = load(
        None,
        &[(
            "orders",
            &windowed(both, "window = \"30d\"\nend = \"now-5m\"\n"),
        )],
        &[],
        &SettingsOverrides::default(),
    );
    let plan = loaded.expect("plans").plan;
    let windows = plan.jobs[0].incremental.as_ref().unwrap().windows.clone();
    assert_eq!(
        windows,
        Some(Windows {
            span: Some(Lookback::Duration(std::time::Duration::from_secs(
                30 * 86400
            ))),
            end: WindowEnd::BeforeNow(std::time::Duration::from_secs(300)),
        })
    );
}
