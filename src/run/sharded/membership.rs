//! This process as a holder of a sharded invocation: registered at the
//! start with a heartbeat, ended when the run ends; and the runs of
//! holders that stopped without ending, closed as `interrupted`.

use chrono::{DateTime, Utc};

use crate::run::assignment::Sharding;
use crate::run::error::RunError;
use crate::run::heartbeat::{HEARTBEAT_EVERY, Heartbeat};
use crate::run::holder::{holder_is_dead, stale_after};
use crate::run::writer::Renewal;
use crate::run::writer::Writer;
use crate::store::OtherRuns;

/// This process as a holder of the invocation: registered at the start,
/// renewed every [`HEARTBEAT_EVERY`], ended when the run ends.
pub(crate) struct HolderHeartbeat(Heartbeat);

/// Register `holder` and start its heartbeat. Returns the invocation's
/// start time (the first shard's clock).
pub(crate) async fn register(
    writer: &Writer,
    sharding: &Sharding,
    holder: &str,
) -> Result<(DateTime<Utc>, HolderHeartbeat), RunError> {
    let (invocation, me, index, steal) = (
        sharding.invocation.clone(),
        holder.to_string(),
        sharding.spec.index,
        sharding.steal,
    );
    let started = writer
        .register_holder(invocation, me, index, steal)
        .await??;
    // A killed process of this invocation may have left runs `running`
    // (a rerun of its index finds them here, whatever else it does).
    if let Err(err) = close_dead_runs(writer, sharding, holder).await {
        tracing::warn!(error = %err, "could not close the runs of stopped shards");
    }
    let started_at = DateTime::parse_from_rfc3339(&started)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    let (invocation, me) = (sharding.invocation.clone(), holder.to_string());
    let heartbeat = Heartbeat::start(
        writer,
        HEARTBEAT_EVERY,
        "this shard's heartbeat (others take its streams over once it is stale)".into(),
        Renewal::Holder {
            invocation,
            holder: me,
        },
        || {},
    );
    Ok((started_at, HolderHeartbeat(heartbeat)))
}

impl HolderHeartbeat {
    /// Stop the heartbeat and record that this process ended, so other
    /// shards know at once that it runs nothing any more.
    pub(crate) async fn end(self, writer: &Writer, sharding: &Sharding, holder: &str) {
        self.0.stop().await;
        let (invocation, me) = (sharding.invocation.clone(), holder.to_string());
        let ended = writer.end_holder(invocation, me).await;
        if !matches!(ended, Ok(Ok(()))) {
            tracing::warn!(
                "could not record the end of this shard; its heartbeat goes stale instead"
            );
        }
    }
}

/// Mark `interrupted` the runs of this invocation whose process stopped
/// (see `store/sqlite/invocations.rs`); what is still running elsewhere.
pub(crate) async fn close_dead_runs(
    writer: &Writer,
    sharding: &Sharding,
    holder: &str,
) -> Result<OtherRuns, RunError> {
    let (invocation, me) = (sharding.invocation.clone(), holder.to_string());
    let mine = me.clone();
    let found = writer
        .close_dead_runs(
            invocation,
            me,
            stale_after(),
            Box::new(move |other| holder_is_dead(other, &mine)),
        )
        .await??;
    if found.interrupted > 0 {
        tracing::warn!(
            runs = found.interrupted,
            "marked interrupted the runs of shards whose process stopped before finishing them"
        );
    }
    Ok(found)
}
