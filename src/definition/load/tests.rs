use super::*;
use crate::definition::{JobAuthDef, SecretDef};

fn job_error(text: &str) -> LoadError {
    let source = SourceFile::new("jobs/orders.toml", text);
    parse::<JobDef>(&source).unwrap_err()
}

fn parts(err: &LoadError) -> (usize, usize, String, String, Option<String>) {
    (
        err.line,
        err.column,
        err.key.clone(),
        err.to_string(),
        err.hint(),
    )
}

#[test]
#[allow(clippy::type_complexity)] // a table of expectations reads best inline
fn parse_errors_carry_line_column_key_and_hint() {
    let cases: &[(&str, &str, (usize, usize, &str, &str, Option<&str>))] = &[
        (
            "misspelt top-level table",
            "[request]\nurl = \"https://x.example\"\n[pagniation]\ntype = \"none\"\n",
            (
                3,
                2,
                "pagniation",
                "unknown key `pagniation`",
                Some("did you mean `pagination`?"),
            ),
        ),
        (
            "misspelt key in a table",
            "[request]\nurl = \"https://x.example\"\ntimeuot = \"3s\"\n",
            (
                3,
                1,
                "request.timeuot",
                "unknown key `timeuot` in [request]",
                Some("did you mean `timeout`?"),
            ),
        ),
        (
            "key far from any valid one",
            "[request]\nurl = \"https://x.example\"\nzzzzzz = 1\n",
            (
                3,
                1,
                "request.zzzzzz",
                "unknown key `zzzzzz` in [request]",
                Some("valid keys: url, method, query, headers, body, timeout"),
            ),
        ),
        (
            "misspelt pagination type",
            "[request]\nurl = \"https://x.example\"\n[pagination]\ntype = \"cusor\"\n",
            (
                4,
                8,
                "pagination",
                "unknown value `cusor` in [pagination]",
                Some("did you mean `cursor`?"),
            ),
        ),
        (
            "wrong type",
            "[request]\nurl = \"https://x.example\"\n[pagination]\ntype = \"offset\"\nlimit = \"100\"\n",
            (
                5,
                9,
                "pagination.limit",
                "invalid type: string \"100\", expected u64 in [pagination]",
                None,
            ),
        ),
        (
            "missing request",
            "description = \"x\"\n",
            (1, 1, "request", "missing key `request`", None),
        ),
        (
            "unknown key in a secret table",
            "auth = { type = \"bearer\", token = { evn = \"T\" } }\n[request]\nurl = \"https://x.example\"\n",
            (
                1,
                35,
                "auth.token.evn",
                "unknown key `evn` in [auth.token]",
                Some("did you mean `env`?"),
            ),
        ),
    ];
    for (name, text, expected) in cases {
        let got = parts(&job_error(text));
        let expected = (
            expected.0,
            expected.1,
            expected.2.to_string(),
            expected.3.to_string(),
            expected.4.map(str::to_string),
        );
        assert_eq!(got, expected, "case {name}");
    }
}

#[test]
fn secret_values_never_reach_the_message() {
    let err = job_error(
        "auth = { type = \"basic\", username = \"u\", password = 987654321 }\n[request]\nurl = \"https://x.example\"\n",
    );
    let text = format!("{err} {:?} {err:?}", err.hint());
    assert!(!text.contains("987654321"), "{text}");
    assert!(
        err.to_string().contains("`password` is not a valid secret"),
        "{text}"
    );
}

#[test]
fn inline_auth_and_secret_forms_parse() {
    let source = SourceFile::new(
        "jobs/a.toml",
        "auth = { type = \"bearer\", token = { command = [\"vault\", \"read\"] } }\n[request]\nurl = \"https://x.example\"\nquery = { b = \"1\", a = 2 }\n",
    );
    let job: JobDef = parse(&source).unwrap();
    let Some(auth) = job.auth.map(|a| a.into_inner()) else {
        panic!("no auth")
    };
    let JobAuthDef::Inline(def) = auth else {
        panic!("not inline")
    };
    let token = def.token.map(|t| t.into_inner());
    assert_eq!(
        token,
        Some(SecretDef::Command(vec!["vault".into(), "read".into()]))
    );
    let keys: Vec<_> = job
        .request
        .query
        .0
        .iter()
        .map(|(k, v)| (k.get_ref().clone(), v.get_ref().0.clone()))
        .collect();
    assert_eq!(
        keys,
        vec![("b".to_string(), "1".to_string()), ("a".into(), "2".into())]
    );
}

#[test]
fn jobs_dir_loads_toml_files_only_and_reports_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let ok = "[request]\nurl = \"https://x.example\"\n";
    std::fs::write(dir.path().join("b.toml"), ok).unwrap();
    std::fs::write(dir.path().join("a.toml"), ok).unwrap();
    std::fs::write(dir.path().join("bad-name.toml"), ok).unwrap();
    std::fs::write(dir.path().join("notes.md"), "x").unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    std::fs::write(dir.path().join("examples/c.toml"), ok).unwrap();
    let (jobs, errors) = load_jobs_dir(dir.path());
    let names: Vec<_> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].to_string().contains("`bad-name`"),
        "{}",
        errors[0]
    );
    let (jobs, errors) = load_jobs_dir(&dir.path().join("missing"));
    assert!(jobs.is_empty() && errors.is_empty());
}
