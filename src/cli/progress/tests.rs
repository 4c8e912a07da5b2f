use super::*;

fn hidden() -> Arc<TerminalProgress> {
    TerminalProgress::new(
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        None,
    )
}

fn messages(display: &TerminalProgress, now: Instant) -> Vec<String> {
    display.shared.refresh(now);
    let running = lock(&display.shared.running);
    let mut lines: Vec<String> = running
        .iter()
        .filter_map(|line| line.bar.as_ref().map(|bar| bar.message()))
        .collect();
    lines.push(display.shared.total.message());
    lines
}

#[test]
fn each_stream_has_a_line_with_its_pages_records_rate_and_retries() {
    let display = hidden();
    let (eu_stats, whole_stats) = (Arc::new(RequestStats::new()), Arc::new(RequestStats::new()));
    let eu = display.stream_started("orders", "eu", &eu_stats);
    let whole = display.stream_started("customers", "", &whole_stats);
    eu.page(1, 100);
    eu.page(3, 1200);
    eu_stats.retry();
    whole.page(1, 1);
    let started = display.shared.started;
    let lines = messages(&display, started + Duration::from_secs(5));
    assert!(
        lines[0].starts_with("orders [eu]: 3 pages, 1200 records ("),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with(", 1 retry"), "{}", lines[0]);
    // The stream started a moment after the display: a little over 240/s.
    let eu_rate: f64 = lines[0]
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once("/s)"))
        .and_then(|(rate, _)| rate.parse().ok())
        .expect("a rate");
    assert!((240.0..=245.0).contains(&eu_rate), "{}", lines[0]);
    assert_eq!(lines[1], "customers: 1 page, 1 record (0/s), 0 retries");
    assert_eq!(
        lines[2],
        "total: 2 running, 0 ended: 4 pages, 1201 records (240/s), 1 retry, 5s"
    );
}

#[test]
fn an_ended_stream_leaves_its_line_and_stays_in_the_total() {
    let display = hidden();
    let stats = Arc::new(RequestStats::new());
    let first = display.stream_started("orders", "eu", &stats);
    first.page(2, 50);
    stats.retry();
    stats.retry();
    drop(first);
    let second = display.stream_started("orders", "us", &Arc::new(RequestStats::new()));
    second.page(1, 10);
    let started = display.shared.started;
    let lines = messages(&display, started + Duration::from_secs(2));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("orders [us]: 1 page, 10 records"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        "total: 1 running, 1 ended: 3 pages, 60 records (30/s), 2 retries, 2s"
    );
}

#[test]
fn past_the_line_limit_streams_count_in_the_total_only() {
    let display = hidden();
    let stats = Arc::new(RequestStats::new());
    let handles: Vec<_> = (0..MAX_STREAM_LINES + 3)
        .map(|i| display.stream_started("events", &format!("p{i}"), &stats))
        .collect();
    let lines = messages(&display, Instant::now());
    assert_eq!(lines.len(), MAX_STREAM_LINES + 1);
    let total = lines.last().expect("a total line");
    assert!(total.starts_with("total: 15 running, 0 ended"), "{total}");
    drop(handles);
    display.finish();
    assert!(lock(&display.shared.running).is_empty());
    assert!(display.shared.total.is_finished());
}
