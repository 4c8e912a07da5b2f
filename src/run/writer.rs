//! The single writer: one OS thread owns the `Store`; async tasks send it
//! closures over a bounded channel and await the answer. A bounded channel
//! plus "await the previous page's commit before sending the next" keeps
//! memory bounded by configuration, however large the sync.
//!
//! Beside it, a checkpoint thread copies the WAL into the database file
//! (see [`WalThread`]): measured on 1M records, that work done inline took
//! about 45% of the bytes the writer wrote.

#[cfg(test)]
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::RunError;
use crate::store::Store;

type Command = Box<dyn FnOnce(&mut Store) + Send>;

/// How many commands may wait for the writer. Each stream has at most
/// three pages handed over (`PAGES_AHEAD_OF_COMMIT` in `stream.rs`); this
/// bounds the pages waiting across all streams, whatever the concurrency.
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
                    command(&mut store);
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

    /// Run `work` on the writer thread and wait for its result.
    pub async fn call<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> R + Send + 'static,
    ) -> Result<R, RunError> {
        let answer = self.submit(work).await?;
        answer.await.map_err(|_| RunError::WriterGone)
    }

    /// Queue `work` and return at once with a receiver for its result, so
    /// the caller can fetch the next page while this one is written.
    pub async fn submit<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> R + Send + 'static,
    ) -> Result<oneshot::Receiver<R>, RunError> {
        let (reply, answer) = oneshot::channel();
        let command: Command = Box::new(move |store| {
            let _ = reply.send(work(store));
        });
        self.commands
            .send(command)
            .await
            .map_err(|_| RunError::WriterGone)?;
        Ok(answer)
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
        let mut checkpoint = match store.wal_checkpointer() {
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
            .spawn(move || {
                let mut warned = false;
                while let Ok(request) = queue.recv() {
                    if let Err(err) = checkpoint()
                        && !warned
                    {
                        tracing::warn!(error = %err, "WAL checkpoint failed; the WAL file may grow until the run ends");
                        warned = true;
                    }
                    if let Some(done) = request {
                        let _ = done.send(());
                    }
                }
            });
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
            Writer::spawn(Store::open(&crate::store::Database::sqlite(&path)).unwrap()).unwrap();
        let table = Arc::new(TableSpec {
            table: "t".into(),
            mode: WriteMode::Merge,
            columns: Vec::new(),
            has_primary_key: true,
        });
        let prepared = table.clone();
        let run = writer
            .call(move |store| {
                store.prepare_table(&prepared)?;
                store.begin_run("t")
            })
            .await
            .unwrap()
            .unwrap();
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
            let table = table.clone();
            writer
                .call(move |store| {
                    store.apply_page(&StreamKey::new("t", ""), &table, run, &records, "{}")
                })
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
        let store = Store::open(&crate::store::Database::sqlite(&path)).unwrap();
        assert_eq!(store.count_rows("t").unwrap(), 120_000);
    }
}
