//! The JSON Schemas of apisync.toml and job files (`apisync schema`): the
//! copies in docs/schema/ are what the code generates, and an independent
//! validator (Python's `jsonschema`, reading TOML with `tomllib`) accepts
//! every project and job file in the repository and rejects a misspelled
//! key or a value of the wrong type.
//!
//! Without python3 and `jsonschema` the validator tests skip with a note,
//! except under CI (env `CI` set), where they fail (.ci/run installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use apisync::definition::{SchemaKind, schema_json};
use serde_yaml_ng::Value as Yaml;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schema_file(kind: SchemaKind) -> PathBuf {
    let name = match kind {
        SchemaKind::Project => "project",
        SchemaKind::Job => "job",
    };
    root().join(format!("docs/schema/{name}.schema.json"))
}

#[test]
fn the_committed_schemas_are_the_generated_ones() {
    for (kind, arg) in [(SchemaKind::Project, "project"), (SchemaKind::Job, "job")] {
        let path = schema_file(kind);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == schema_json(kind),
            "{} is stale (hint: cargo run -- schema {arg} > docs/schema/{arg}.schema.json)",
            path.display()
        );
    }
}

/// Checks TOML files against a schema: prints one line per file, "ok" or
/// the first error with its path in the document.
const VALIDATOR: &str = r#"
import json, sys, tomllib
import jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
validator = jsonschema.Draft7Validator(schema)
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        print(path, "ERROR", "/".join(map(str, e.path)), e.message)
    else:
        print(path, "ok")
"#;

/// Whether python3 with `jsonschema` is here; under CI its absence fails.
fn validator_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import jsonschema, tomllib"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with jsonschema is missing, and CI must run this test \
             (hint: python3 -m pip install jsonschema; .ci/run does)"
        );
        eprintln!("skipped: python3 with the jsonschema package is not installed");
    }
    found
}

/// Validate `files` against the schema of `kind`: each file's verdict line.
fn validate(kind: SchemaKind, files: &[PathBuf]) -> Vec<String> {
    let output = Command::new("python3")
        .arg("-c")
        .arg(VALIDATOR)
        .arg(schema_file(kind))
        .args(files)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "the validator failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect()
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// The project and job files embedded in the Kubernetes ConfigMaps,
/// written out to `dir`: (project files, job files).
fn configmap_files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/configmap.yaml"))
        .expect("configmap.yaml");
    let (mut projects, mut jobs) = (Vec::new(), Vec::new());
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = Yaml::deserialize(document).expect("YAML");
        let name = value["metadata"]["name"].as_str().unwrap_or("").to_string();
        let Some(data) = value["data"].as_mapping() else {
            continue;
        };
        for (key, body) in data {
            let (Some(key), Some(body)) = (key.as_str(), body.as_str()) else {
                continue;
            };
            let path = dir.join(format!("{name}-{key}"));
            std::fs::write(&path, body).expect("write");
            match key {
                "apisync.toml" => projects.push(path),
                _ => jobs.push(path),
            }
        }
    }
    (projects, jobs)
}

use serde::Deserialize as _;

#[test]
fn every_project_and_job_file_of_the_repository_validates() {
    if !validator_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut projects, mut jobs) = configmap_files(dir.path());
    assert!(
        !projects.is_empty() && !jobs.is_empty(),
        "no ConfigMap files found"
    );
    jobs.extend(toml_files(&root().join("jobs")));
    jobs.extend(toml_files(&root().join("jobs/examples")));
    jobs.extend(toml_files(&root().join("tests/fixtures/defs/good/jobs")));
    projects.push(root().join("jobs/examples/config/apisync.toml"));
    projects.push(root().join("tests/fixtures/defs/good/apisync.toml"));
    assert!(jobs.len() >= 14, "too few job files found: {jobs:?}");
    for (kind, files) in [(SchemaKind::Project, &projects), (SchemaKind::Job, &jobs)] {
        let verdicts = validate(kind, files);
        assert_eq!(verdicts.len(), files.len(), "{verdicts:?}");
        let failed: Vec<&String> = verdicts.iter().filter(|v| !v.ends_with(" ok")).collect();
        assert!(failed.is_empty(), "{failed:#?}");
    }
}

#[test]
fn a_misspelled_key_or_a_wrong_type_is_rejected() {
    if !validator_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let good_job = "[request]\nurl = \"https://api.example.com/v1/items\"\n";
    let jobs = [
        write("good.toml", good_job),
        write(
            "typo.toml",
            &format!("{good_job}[pagination]\ntpye = \"cursor\"\n"),
        ),
        write("type.toml", "[request]\nurl = 5\n"),
        write(
            "enum.toml",
            &format!("{good_job}[output]\nmode = \"upsert\"\n"),
        ),
        write(
            "secret.toml",
            "auth = { type = \"bearer\", token = { env = \"A\", file = \"b\" } }\n[request]\nurl = \"https://x\"\n",
        ),
    ];
    let verdicts = validate(SchemaKind::Job, &jobs);
    assert!(verdicts[0].ends_with(" ok"), "{verdicts:?}");
    for verdict in &verdicts[1..] {
        assert!(verdict.contains(" ERROR "), "not rejected: {verdict}");
    }
    assert!(verdicts[1].contains("tpye"), "{}", verdicts[1]);
    let projects = [
        write("apisync.toml", "concurrency = 4\n"),
        write("typo-project.toml", "concurency = 4\n"),
        write("type-project.toml", "concurrency = \"four\"\n"),
    ];
    let verdicts = validate(SchemaKind::Project, &projects);
    assert!(verdicts[0].ends_with(" ok"), "{verdicts:?}");
    assert!(
        verdicts[1].contains(" ERROR ") && verdicts[1].contains("concurency"),
        "{verdicts:?}"
    );
    assert!(verdicts[2].contains(" ERROR "), "{verdicts:?}");
}
