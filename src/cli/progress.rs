//! The live display on a terminal: a line per running stream (job,
//! partition, pages, records, rate, retries) and a total line, drawn on
//! stderr with indicatif, under the log lines.
//!
//! It exists only when stderr is a terminal, without `-q` and without
//! `--log-format json` (`enable`, from the logging setup): scripts, cron
//! mails and log aggregators never see it. Log lines go through the same
//! `MultiProgress` (`LogWriter`), which clears the bars, prints the line
//! and draws them again below it, so neither tears the other.
//!
//! The run stage only stores counters (`page` is two atomic stores); one
//! ticker thread turns them into text a few times a second, so the page
//! path never waits on the terminal.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::fmt::MakeWriter;

use crate::fetch::RequestStats;
use crate::run::{Progress, StreamProgress};

/// The display of this process, once `enable` decided there is one.
static TERMINAL: OnceLock<MultiProgress> = OnceLock::new();

/// How often the lines are redrawn (rates and retries move between pages).
const TICK: Duration = Duration::from_millis(150);

/// Streams shown with a line of their own; more run on in the total only,
/// so a wide run does not scroll the terminal.
const MAX_STREAM_LINES: usize = 12;

/// A spinner per line: it turns while the stream waits, so a stuck stream
/// is visible as a line whose numbers stop while its spinner goes on.
const SPINNER: &str = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ";

/// Turn the display on for this process (called once, by the logging setup,
/// which knows whether stderr is a terminal, `-q` and the log format).
pub(super) fn enable() {
    let _ = TERMINAL.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
}

/// The display for one run, or None when progress is off.
pub(super) fn start() -> Option<Arc<TerminalProgress>> {
    let multi = TERMINAL.get()?.clone();
    Some(TerminalProgress::new(multi, Some(TICK)))
}

/// stderr for the log lines: through the display when there is one, so a
/// line prints above the bars instead of through them.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

impl io::Write for LogWriter {
    /// tracing's formatter hands over each event whole, in one call.
    /// Each line passes the credential scrubber first (server text in
    /// error fields, whatever a debug line quotes).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = crate::secret::scrub_bytes(buf);
        match TERMINAL.get() {
            Some(multi) => multi.suspend(|| io::stderr().write_all(&line))?,
            None => io::stderr().write_all(&line)?,
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// The indicatif `Progress`: stream lines above a total line.
pub(super) struct TerminalProgress {
    shared: Arc<Shared>,
    /// Dropping the sender stops the ticker thread.
    ticker: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

struct Shared {
    multi: MultiProgress,
    total: ProgressBar,
    started: Instant,
    /// Locked only briefly (a stream starting or ending, a redraw), never
    /// across an await.
    running: Mutex<Vec<Arc<StreamLine>>>,
    ended: Ended,
}

/// What the streams that ended add to the total.
#[derive(Default)]
struct Ended {
    streams: AtomicU64,
    pages: AtomicU64,
    records: AtomicU64,
    retries: AtomicU64,
}

struct StreamLine {
    job: String,
    partition: String,
    started: Instant,
    pages: AtomicU64,
    records: AtomicU64,
    stats: Arc<RequestStats>,
    /// None past `MAX_STREAM_LINES`: counted in the total only.
    bar: Option<ProgressBar>,
}

/// The observer handed to one stream; dropping it ends the stream's line.
struct StreamHandle {
    line: Arc<StreamLine>,
    shared: Arc<Shared>,
}

impl TerminalProgress {
    /// `tick`: how often a thread redraws the lines (None: only `refresh`,
    /// for tests).
    fn new(multi: MultiProgress, tick: Option<Duration>) -> Arc<Self> {
        let total = multi.add(ProgressBar::new_spinner());
        total.set_style(style("{wide_msg}"));
        let shared = Arc::new(Shared {
            multi,
            total,
            started: Instant::now(),
            running: Mutex::new(Vec::new()),
            ended: Ended::default(),
        });
        shared.refresh(Instant::now());
        let ticker = tick.and_then(|every| {
            let (stop, stopped) = mpsc::channel::<()>();
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name("apisync-progress".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                        shared.refresh(Instant::now());
                    }
                })
                .ok()?;
            Some((stop, thread))
        });
        Arc::new(Self {
            shared,
            ticker: Mutex::new(ticker),
        })
    }

    /// Stop redrawing and take the lines off the terminal (before the
    /// summary is printed).
    pub(super) fn finish(&self) {
        let ticker = lock(&self.ticker).take();
        if let Some((stop, thread)) = ticker {
            drop(stop);
            let _ = thread.join();
        }
        for line in lock(&self.shared.running).drain(..) {
            if let Some(bar) = &line.bar {
                bar.finish_and_clear();
                self.shared.multi.remove(bar);
            }
        }
        self.shared.total.finish_and_clear();
        self.shared.multi.remove(&self.shared.total);
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Progress for TerminalProgress {
    fn stream_started(
        &self,
        job: &str,
        partition: &str,
        stats: &Arc<RequestStats>,
    ) -> Arc<dyn StreamProgress> {
        let shared = &self.shared;
        let mut running = lock(&shared.running);
        let shown = running.iter().filter(|line| line.bar.is_some()).count();
        let bar = (shown < MAX_STREAM_LINES).then(|| {
            let bar = shared
                .multi
                .insert_before(&shared.total, ProgressBar::new_spinner());
            bar.set_style(style("{spinner} {wide_msg}"));
            bar
        });
        let line = Arc::new(StreamLine {
            job: job.to_string(),
            partition: partition.to_string(),
            started: Instant::now(),
            pages: AtomicU64::new(0),
            records: AtomicU64::new(0),
            stats: stats.clone(),
            bar,
        });
        running.push(line.clone());
        drop(running);
        shared.refresh(Instant::now());
        Arc::new(StreamHandle {
            line,
            shared: shared.clone(),
        })
    }
}

impl StreamProgress for StreamHandle {
    fn page(&self, pages: u64, records: u64) {
        self.line.pages.store(pages, Ordering::Relaxed);
        self.line.records.store(records, Ordering::Relaxed);
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        let shared = &self.shared;
        lock(&shared.running).retain(|line| !Arc::ptr_eq(line, &self.line));
        let line = &self.line;
        let ended = &shared.ended;
        ended.streams.fetch_add(1, Ordering::Relaxed);
        ended.pages.fetch_add(line.pages(), Ordering::Relaxed);
        ended.records.fetch_add(line.records(), Ordering::Relaxed);
        ended.retries.fetch_add(line.retries(), Ordering::Relaxed);
        if let Some(bar) = &line.bar {
            bar.finish_and_clear();
            shared.multi.remove(bar);
        }
        shared.refresh(Instant::now());
    }
}

impl Shared {
    /// Redraw every line from the counters, as of `now`.
    fn refresh(&self, now: Instant) {
        let running = lock(&self.running);
        let mut total = Figures {
            pages: self.ended.pages.load(Ordering::Relaxed),
            records: self.ended.records.load(Ordering::Relaxed),
            retries: self.ended.retries.load(Ordering::Relaxed),
            elapsed: now.saturating_duration_since(self.started),
        };
        for line in running.iter() {
            total.pages += line.pages();
            total.records += line.records();
            total.retries += line.retries();
            if let Some(bar) = &line.bar {
                bar.set_message(line.text(now));
                bar.tick();
            }
        }
        let ended = self.ended.streams.load(Ordering::Relaxed);
        self.total
            .set_message(total_text(running.len(), ended, &total));
    }
}

impl StreamLine {
    fn pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed)
    }
    fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
    fn retries(&self) -> u64 {
        self.stats.snapshot().retries
    }
    fn text(&self, now: Instant) -> String {
        let figures = Figures {
            pages: self.pages(),
            records: self.records(),
            retries: self.retries(),
            elapsed: now.saturating_duration_since(self.started),
        };
        stream_text(&self.job, &self.partition, &figures)
    }
}

/// What a line shows.
struct Figures {
    pages: u64,
    records: u64,
    retries: u64,
    elapsed: Duration,
}

/// `orders [eu]: 3 pages, 1200 records (240/s), 1 retry`
fn stream_text(job: &str, partition: &str, figures: &Figures) -> String {
    let name = if partition.is_empty() {
        job.to_string()
    } else {
        format!("{job} [{partition}]")
    };
    format!("{name}: {}", figures_text(figures))
}

/// `total: 2 running, 5 ended: 17 pages, 4000 records (800/s), 3 retries, 12s`
/// (short enough for an 80-column terminal; longer lines are cut, not wrapped).
fn total_text(running: usize, ended: u64, figures: &Figures) -> String {
    let seconds = Duration::from_secs(figures.elapsed.as_secs());
    format!(
        "total: {running} running, {ended} ended: {}, {}",
        figures_text(figures),
        humantime::format_duration(seconds)
    )
}

fn figures_text(figures: &Figures) -> String {
    // Over at least a second, so the first draw does not show a wild rate.
    let rate = figures.records as f64 / figures.elapsed.as_secs_f64().max(1.0);
    format!(
        "{}, {} ({rate:.0}/s), {}",
        count(figures.pages, "page", "pages"),
        count(figures.records, "record", "records"),
        count(figures.retries, "retry", "retries"),
    )
}

fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .tick_chars(SPINNER)
}

/// A poisoned lock only means a redraw panicked; the counters are fine.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
