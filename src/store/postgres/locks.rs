//! Advisory locks: how processes sharing one PostgreSQL database take
//! turns where SQLite would take its write lock (`BEGIN IMMEDIATE`).

use postgres::GenericClient;

/// First key of every advisory lock apisync takes ("APSY"); the second is
/// `hashtext` of what is locked (`migrate`, `lease:JOB`, `refresh:AUTH`,
/// `table:NAME`, `shard-job:INVOCATION:JOB`, `shard-stream:...`,
/// `invocation:ID`, `shard-prune`). Two names hashing alike only wait for each other.
pub(crate) const LOCK_SPACE: i32 = 0x4150_5359;

/// Take the advisory lock for `name` until the transaction ends.
pub(crate) fn xact_lock(c: &mut impl GenericClient, name: &str) -> Result<(), postgres::Error> {
    c.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&LOCK_SPACE, &name],
    )
    .map(drop)
}

/// Take the shared advisory lock for `name` until the transaction ends:
/// holders of the shared lock run side by side, and wait for (or hold off)
/// one holder of the exclusive lock ([`xact_lock`]).
pub(crate) fn xact_lock_shared(
    c: &mut impl GenericClient,
    name: &str,
) -> Result<(), postgres::Error> {
    c.execute(
        "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))",
        &[&LOCK_SPACE, &name],
    )
    .map(drop)
}
