use super::*;

fn summary(job: &str, status: JobStatus) -> JobSummary {
    JobSummary {
        job: job.into(),
        status,
        pages: 3,
        records: 250,
        token_requests: 1,
        seconds: 1.5,
        error: None,
        interrupted: false,
        http: crate::fetch::StatsSnapshot {
            requests: 5,
            status_2xx: 3,
            status_5xx: 1,
            transport_errors: 1,
            retries: 2,
            bytes: 4096,
            ..Default::default()
        },
        streams: None,
    }
}

#[test]
fn renders_every_family_with_help_and_type() {
    let ok = summary("orders", JobStatus::Succeeded);
    let failed = summary("users", JobStatus::Failed);
    let jobs = [
        JobView {
            summary: &ok,
            last_success: Some(1_700_000_000.0),
        },
        JobView {
            summary: &failed,
            last_success: None,
        },
    ];
    insta::assert_snapshot!(render(&jobs, JobLabel::Include));
}

#[test]
fn pushed_bodies_leave_the_job_label_to_the_grouping_key() {
    let ok = summary("orders", JobStatus::Succeeded);
    let view = JobView {
        summary: &ok,
        last_success: None,
    };
    let text = render(&[view], JobLabel::Omit);
    assert!(text.contains("apisync_job_records 250\n"), "{text}");
    assert!(
        text.contains("apisync_job_status{status=\"succeeded\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("apisync_job=\""), "{text}");
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
    assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
    let odd = summary("we\"ird\\name", JobStatus::Succeeded);
    let view = JobView {
        summary: &odd,
        last_success: None,
    };
    let text = render(&[view], JobLabel::Include);
    assert!(
        text.contains(r#"apisync_job_pages{apisync_job="we\"ird\\name"} 3"#),
        "{text}"
    );
}

#[test]
fn numbers_use_the_text_format_spelling() {
    assert_eq!(number(3.0), "3");
    assert_eq!(number(1.25), "1.25");
    assert_eq!(number(f64::INFINITY), "+Inf");
    assert_eq!(number(f64::NAN), "NaN");
}
