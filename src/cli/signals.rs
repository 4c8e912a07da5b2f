//! SIGINT and SIGTERM cancel one token that every wait selects against; the
//! signal received decides the exit code (130 or 143).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

use super::Exit;

/// Which signal stopped the run, if any.
#[derive(Clone, Default)]
pub struct Stopped(Arc<AtomicU8>);

const SIGINT: u8 = 2;
const SIGTERM: u8 = 15;

impl Stopped {
    pub fn exit(&self) -> Option<Exit> {
        match self.0.load(Ordering::SeqCst) {
            SIGINT => Some(Exit::Interrupted),
            SIGTERM => Some(Exit::Terminated),
            _ => None,
        }
    }
}

/// Cancel `cancel` on the first SIGINT or SIGTERM; a second signal exits at once.
pub fn watch(cancel: CancellationToken) -> Stopped {
    let stopped = Stopped::default();
    let record = stopped.clone();
    tokio::spawn(async move {
        let mut signals = Signals::new();
        let mut count = 0;
        loop {
            let signal = signals.next().await;
            count += 1;
            if count > 1 {
                eprintln!("second signal: exiting now");
                std::process::exit(i32::from(128 + signal));
            }
            record.0.store(signal, Ordering::SeqCst);
            cancel.cancel();
            // Logged once the stop is in force, so the line proves it.
            tracing::warn!(
                signal,
                "stopping: no new requests; committing complete pages"
            );
        }
    });
    stopped
}

/// The signal streams, registered once so none is missed between waits.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let streams = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some((term, int)),
            _ => None,
        };
        Signals { streams }
    }

    #[cfg(unix)]
    async fn next(&mut self) -> u8 {
        let Some((term, int)) = &mut self.streams else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => SIGTERM,
            _ = int.recv() => SIGINT,
        }
    }

    #[cfg(not(unix))]
    fn new() -> Self {
        Signals {}
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> u8 {
        let _ = tokio::signal::ctrl_c().await;
        SIGINT
    }
}
