//! One PostgreSQL connection on a thread of its own.
//!
//! The sync `postgres::Client` drives its connection with a private tokio
//! runtime, and panics when called from a thread that is already inside a
//! runtime. Store methods are called both from the writer thread and from
//! async code (leases, status, the partition reader), so the client lives on
//! a plain thread that runs the closures sent to it, one at a time, and
//! answers over a std channel. The caller blocks for the answer, exactly as
//! it would on a SQLite call.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::{Client, Statement};

use crate::plan::{PostgresUrl, SslMode};
use crate::store::error::StoreError;

/// Giving up on an unreachable server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Prepared statements kept per connection: a few shapes per table.
const STATEMENT_CACHE: usize = 256;

/// The client and its prepared statements, owned by the connection thread.
pub(crate) struct Session {
    pub(crate) client: Client,
    cache: HashMap<String, Statement>,
}

impl Session {
    /// `sql` prepared once per connection and reused.
    pub(crate) fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.cache.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        if self.cache.len() >= STATEMENT_CACHE {
            self.cache.clear();
        }
        self.cache.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

type Work = Box<dyn FnOnce(&mut Session) + Send>;

/// A connection thread. Dropping it closes the connection.
pub(crate) struct PgConn {
    work: Option<std_mpsc::Sender<Work>>,
    thread: Option<JoinHandle<()>>,
    /// The URL with its password hidden, for errors.
    shown: String,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("database", &self.shown)
            .finish_non_exhaustive()
    }
}

impl PgConn {
    /// Connect on a new thread; fails when the server cannot be reached or
    /// refuses the login.
    pub(crate) fn connect(url: &PostgresUrl) -> Result<PgConn, StoreError> {
        let shown = url.redacted().to_string();
        let lost = || StoreError::ConnectionLost {
            database: shown.clone(),
        };
        let (work, queue) = std_mpsc::channel::<Work>();
        let (ready, connected) = std_mpsc::sync_channel(1);
        let url = url.clone();
        let thread = std::thread::Builder::new()
            .name("apisync-postgres".into())
            .spawn(move || {
                let client = match connect_client(&url) {
                    Ok(client) => client,
                    Err(err) => {
                        let _ = ready.send(Err(err));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let mut session = Session {
                    client,
                    cache: HashMap::new(),
                };
                while let Ok(job) = queue.recv() {
                    job(&mut session);
                }
            })
            .map_err(|_| lost())?;
        match connected.recv() {
            Ok(Ok(())) => Ok(PgConn {
                work: Some(work),
                thread: Some(thread),
                shown,
            }),
            Ok(Err(source)) => {
                let _ = thread.join();
                Err(StoreError::Connect {
                    database: shown,
                    source,
                })
            }
            Err(_) => Err(lost()),
        }
    }

    /// Run `job` on the connection thread and wait for its answer. Never
    /// nests runtimes, so it is safe from async code (it blocks the calling
    /// thread for the round trip, as a SQLite call would).
    pub(crate) fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Session) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = std_mpsc::sync_channel(1);
        let work: Work = Box::new(move |session| {
            let _ = answer.send(job(session));
        });
        let sent = self.work.as_ref().map(|w| w.send(work));
        match sent {
            Some(Ok(())) => answered.recv().map_err(|_| self.lost()),
            _ => Err(self.lost()),
        }
    }

    pub(crate) fn lost(&self) -> StoreError {
        StoreError::ConnectionLost {
            database: self.shown.clone(),
        }
    }

    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }
}

impl Drop for PgConn {
    /// Close the queue; the thread drops the client (which says goodbye to
    /// the server) and ends.
    fn drop(&mut self) {
        drop(self.work.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// TCP keepalive: first probe after this much silence.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// TCP keepalive: between probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// TCP keepalive: unanswered probes before the connection is dead.
const KEEPALIVE_RETRIES: u32 = 3;
/// Longest a session of apisync's may sit inside an open transaction doing
/// nothing. apisync's own transactions are short, except the refresh-token
/// guard, which spans one token request (its retries included), well under
/// this.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(600);

fn connect_client(
    url: &PostgresUrl,
) -> Result<Client, Box<dyn std::error::Error + Send + Sync + 'static>> {
    let mut config: postgres::Config = url.expose().parse()?;
    config.connect_timeout(CONNECT_TIMEOUT);
    // A server (or the path to it) that vanishes mid-query is noticed in
    // about a minute and a half instead of the kernel's two hours.
    config.keepalives(true);
    config.keepalives_idle(KEEPALIVE_IDLE);
    config.keepalives_interval(KEEPALIVE_INTERVAL);
    config.keepalives_retries(KEEPALIVE_RETRIES);
    if config.get_application_name().is_none() {
        config.application_name("apisync");
    }
    let mut client = match url.ssl_mode() {
        SslMode::Disable => config.connect(postgres::NoTls)?,
        SslMode::Prefer | SslMode::Require => config.connect(tls()?)?,
    };
    // A process that dies inside a transaction (a node lost between a
    // page's INSERT and its COMMIT) leaves a session the server keeps with
    // its row and advisory locks: the server ends it after this long, so
    // whoever takes the stream over is not blocked behind it for hours.
    client.batch_execute(&format!(
        "SET idle_in_transaction_session_timeout = '{}s'",
        IDLE_IN_TRANSACTION.as_secs()
    ))?;
    Ok(client)
}

/// rustls with an explicit crypto provider (so the process-wide default
/// never matters) and the webpki roots built into the binary: certificates
/// and host names are verified whenever TLS is used.
pub(crate) fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}
