//! The single writer: one OS thread owns the `Store`; async tasks send it
//! typed commands (`commands.rs`: one per store operation the runner
//! needs) over a bounded channel and await the answer. A bounded channel
//! plus streams that wait for their oldest page's commit before fetching
//! more (`PAGES_AHEAD_OF_COMMIT` in `stream.rs`) keeps memory bounded by
//! configuration, however large the sync.
//!
//! Beside it, a checkpoint thread copies the WAL into the database file
//! (see [`WalThread`]): measured on 1M records, that work done inline took
//! about 45% of the bytes the writer wrote.

#[cfg(test)]
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::RunError;
use crate::store::{Store, StoreError};

mod calls;
mod commands;

use commands::Command;
pub(crate) use commands::{Renewal, RunOf};

/// How many commands may wait for the writer. Each stream has at most four
/// pages handed over (`PAGES_AHEAD_OF_COMMIT` in `stream.rs`); this bounds
/// the pages waiting across all streams, whatever the concurrency.
const QUEUE: usize = 16;

/// Commands (mostly page commits) between two nudges of the checkpoint
/// thread: it copies in the background while the writer goes on.
const NUDGE_EVERY: u64 = 8;

/// Commands between two checkpoints the writer waits for. A checkpoint
/// that runs while the writer appends cannot finish the WAL, and SQLite only
/// starts it over from the beginning once it is finished; waiting now and
/// then (for little, since the nudged checkpoints did most of the copying)
/// bounds the WAL file to about this many pages. Each wait stops the
/// writer, which bounds a sequential stream: 96 instead of 32 measured about
/// +13% records/s on 200k records (docs/benchmarks.md), for a WAL file of up
/// to ~96 pages' rows on disk (not in memory).
const WAIT_EVERY: u64 = 96;

/// A cheap, cloneable handle to the writer thread.
#[derive(Clone)]
pub struct Writer {
    commands: mpsc::Sender<Command>,
}

/// The thread itself; join it after every `Writer` is dropped so the last
/// commit is on disk before the process exits.
pub struct WriterThread(JoinHandle<()>);

impl WriterThread {
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("the database writer thread panicked");
        }
    }
}

impl Writer {
    pub fn spawn(mut store: Store) -> Result<(Writer, WriterThread), RunError> {
        let (commands, mut queue) = mpsc::channel::<Command>(QUEUE);
        let handle = std::thread::Builder::new()
            .name("apisync-writer".into())
            .spawn(move || {
                let mut wal = WalThread::start(&store);
                let mut done: u64 = 0;
                // blocking_recv is fine here: this is not a runtime thread.
                while let Some(command) = queue.blocking_recv() {
                    command.run(&mut store);
                    done += 1;
                    if let Some(wal) = &mut wal {
                        wal.after_command(done);
                    }
                }
                // The checkpoint thread ends before the store closes, which
                // then folds the rest of the WAL in as usual.
                drop(wal);
            })
            .map_err(RunError::WriterThread)?;
        Ok((Writer { commands }, WriterThread(handle)))
    }
}

/// A checkpoint request; with a sender, the writer waits for the answer.
type CheckpointRequest = Option<std_mpsc::SyncSender<()>>;

/// The thread that runs WAL checkpoints on its own connection.
struct WalThread {
    requests: Option<std_mpsc::SyncSender<CheckpointRequest>>,
    handle: Option<JoinHandle<()>>,
}

impl WalThread {
    /// None (SQLite then checkpoints inline, as it does by default) for an
    /// in-memory database, or when the thread or connection cannot be had.
    fn start(store: &Store) -> Option<WalThread> {
        let checkpoint = match store.wal_checkpointer() {
            Ok(Some(checkpoint)) => checkpoint,
            Ok(None) => return None,
            Err(err) => {
                tracing::warn!(error = %err, "checkpointing the WAL inline");
                return None;
            }
        };
        // One request waiting is enough: a nudge while one is queued adds nothing.
        let (requests, queue) = std_mpsc::sync_channel::<CheckpointRequest>(1);
        let spawned = std::thread::Builder::new()
            .name("apisync-wal".into())
            .spawn(move || run_checkpoints(&queue, checkpoint));
        match spawned {
            Ok(handle) => Some(WalThread {
                requests: Some(requests),
                handle: Some(handle),
            }),
            Err(err) => {
                // The automatic checkpoint is off now: without this thread
                // the WAL would grow for the whole run.
                tracing::warn!(error = %err, "cannot start the WAL checkpoint thread");
                let _ = store.restore_wal_autocheckpoint();
                None
            }
        }
    }

    fn after_command(&mut self, done: u64) {
        let Some(requests) = &self.requests else {
            return;
        };
        if done.is_multiple_of(WAIT_EVERY) {
            let (reply, answer) = std_mpsc::sync_channel(1);
            if requests.send(Some(reply)).is_ok() {
                let _ = answer.recv();
            }
        } else if done.is_multiple_of(NUDGE_EVERY) {
            let _ = requests.try_send(None);
        }
    }
}

/// Checkpoint on each request until the writer hangs up, or until the first
/// failure: then stop for the rest of the process.
///
/// Stopping is what keeps a failed write safe. A failed checkpoint or flush
/// means a write to the database file may not have reached the disk, and
/// Linux reports that once per file handle: a later flush on this handle
/// would succeed, SQLite would count the WAL as copied and start it over,
/// and the frames behind the lost write would be gone. Without more
/// checkpoints here, the WAL keeps every committed page (it grows for the
/// rest of the run), the writer's own handle still sees the error when it
/// closes, and the next open copies the WAL in again.
fn run_checkpoints(
    queue: &std_mpsc::Receiver<CheckpointRequest>,
    mut checkpoint: impl FnMut() -> Result<(), StoreError>,
) {
    while let Ok(request) = queue.recv() {
        let result = checkpoint();
        if let Some(done) = request {
            let _ = done.send(());
        }
        if let Err(err) = result {
            tracing::error!(error = %err,
                "copying the WAL into the database file failed; apisync stops copying it for the rest of this run, so every committed page stays in the WAL file (hint: check the disk; the next run copies the WAL in)");
            return;
        }
    }
}

impl Drop for WalThread {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(handle) = self.handle.take()
            && handle.join().is_err()
        {
            tracing::error!("the WAL checkpoint thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a failed checkpoint no other one runs (a later one could count
    /// the WAL as copied over a lost write); a writer waiting on the failed
    /// one is answered, and later requests find the thread gone.
    #[test]
    fn checkpoints_stop_at_the_first_failure() {
        let (requests, queue) = std_mpsc::sync_channel::<CheckpointRequest>(1);
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let thread = std::thread::spawn(move || {
            run_checkpoints(&queue, move || {
                match counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                    0 => Ok(()),
                    _ => Err(StoreError::ConnectionLost {
                        database: "test.db".into(),
                    }),
                }
            })
        });
        for _ in 0..2 {
            let (reply, answer) = std_mpsc::sync_channel(1);
            requests.send(Some(reply)).unwrap();
            answer.recv().unwrap();
        }
        thread.join().unwrap();
        assert!(requests.send(None).is_err(), "the thread stopped");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
    use crate::fetch::Record;
    use crate::plan::WriteMode;
    use crate::store::{StreamKey, TableSpec};

    /// With SQLite's automatic checkpoint off, only the checkpoint thread
    /// keeps the WAL from holding every page written: after 1200 pages it
    /// must stay a fraction of the database (without the thread it would
    /// hold more than the whole database).
    #[tokio::test]
    async fn the_checkpoint_thread_keeps_the_wal_small() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let (writer, thread) =
            Writer::spawn(Store::open(&crate::plan::Database::sqlite(&path)).unwrap()).unwrap();
        let table = Arc::new(TableSpec {
            table: "t".into(),
            mode: WriteMode::Merge,
            columns: Vec::new(),
            has_primary_key: true,
            partition: None,
        });
        writer.prepare_table(table.clone()).await.unwrap().unwrap();
        let run = writer
            .begin_run("t".into(), RunOf::Plain)
            .await
            .unwrap()
            .unwrap();
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let padding = "x".repeat(200);
        for page in 0..1200 {
            let records: Vec<Record> = (0..100)
                .map(|i| {
                    let id = page * 100 + i;
                    Record {
                        json: format!("{{\"id\":{id},\"pad\":\"{padding}\"}}"),
                        pk: Some(format!("[{id}]")),
                        columns: Vec::new(),
                    }
                })
                .collect();
            let (table, failed) = (table.clone(), failed.clone());
            let stream = StreamKey::new("t", "");
            writer
                .submit_page(stream, table, run, records, "{}".into(), None, failed)
                .await
                .unwrap()
                .await
                .unwrap()
                .unwrap();
        }
        let size = |suffix: &str| {
            let file = format!("{}{suffix}", path.display());
            std::fs::metadata(file).map_or(0, |m| m.len())
        };
        let (db, wal) = (size(""), size("-wal"));
        assert!(
            db > 24_000_000,
            "the pages reached the database: {db} bytes"
        );
        assert!(wal < db / 4, "WAL {wal} bytes against database {db} bytes");
        drop(writer);
        thread.join();
        let store = Store::open(&crate::plan::Database::sqlite(&path)).unwrap();
        assert_eq!(store.count_rows("t").unwrap(), 120_000);
    }
}
