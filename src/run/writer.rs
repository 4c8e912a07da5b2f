//! The single writer: one OS thread owns the `Store`; async tasks send it
//! closures over a bounded channel and await the answer. A bounded channel
//! plus "await the previous page's commit before sending the next" keeps
//! memory bounded by configuration, however large the sync.

use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::RunError;
use crate::store::Store;

type Command = Box<dyn FnOnce(&mut Store) + Send>;

/// How many commands may wait for the writer. Each stream has at most one
/// page waiting, so this only smooths bursts.
const QUEUE: usize = 16;

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
                // blocking_recv is fine here: this is not a runtime thread.
                while let Some(command) = queue.blocking_recv() {
                    command(&mut store);
                }
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
