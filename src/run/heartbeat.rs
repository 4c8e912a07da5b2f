//! The heartbeat: a task that renews a row of this process's in the
//! database (a job lease, or a sharded run's holder row) through the
//! writer thread, so other processes see that it is alive.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::writer::{Renewal, Writer};

/// How often a running job renews its lease.
pub(super) const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// A task that renews something of this process's in the database every
/// `every`, through the writer, until stopped: a job lease, or a sharded
/// run's holder row.
pub(super) struct Heartbeat {
    stop: CancellationToken,
    task: JoinHandle<bool>,
}

impl Heartbeat {
    /// `renew` answers false when what it renews is no longer this
    /// process's (another one took it over): the heartbeat ends there and
    /// `lost` runs. A failed renewal is a warning; the next one may work.
    pub(super) fn start(
        writer: &Writer,
        every: Duration,
        what: String,
        renew: Renewal,
        lost: impl FnOnce() + Send + 'static,
    ) -> Heartbeat {
        let stop = CancellationToken::new();
        let (stopped, writer) = (stop.clone(), writer.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => return false,
                    _ = tokio::time::sleep(every) => {}
                }
                match writer.renew(renew.clone()).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        tracing::error!(
                            "another process took {what} over (this one looked dead); stopping what it covers"
                        );
                        lost();
                        return true;
                    }
                    Ok(Err(err)) => tracing::warn!(error = %err, "could not renew {what}"),
                    Err(err) => tracing::warn!(error = %err, "could not renew {what}"),
                }
            }
        });
        Heartbeat { stop, task }
    }

    /// Stop renewing. The task holds a Writer handle: it must end before
    /// the writer can, so this waits for it. True when a renewal found it
    /// taken over.
    pub(super) async fn stop(self) -> bool {
        self.stop.cancel();
        self.task.await.unwrap_or(false)
    }
}
