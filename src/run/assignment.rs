//! Which shard runs which stream, and how `--shard`, `--invocation` and
//! `--steal` (or their Kubernetes environment) become a [`Sharding`].
//!
//! The assignment hash ([`ASSIGNMENT`], "fnv1a64-fmix64"): FNV-1a 64 over
//! the job name, the byte 0x1F (unit separator, which no job name contains)
//! and the partition key; then MurmurHash3's 64-bit finalizer `fmix64`;
//! then the remainder modulo the shard count. Why the finalizer: FNV-1a's
//! low bits depend only on the low bits of each input byte, so modulo a
//! power of two (4 shards) similar names (`accounts`, `contacts`, ...)
//! piled up on one shard. `fmix64` folds the high bits into the low ones,
//! so every bit of the result depends on every input byte.
//!
//! Both steps are fixed by their published constants (below), so the same
//! stream lands on the same shard on every platform and in every apisync
//! version that uses this hash; std's `DefaultHasher` promises neither and
//! must never be used here. The unit tests pin known values: changing the
//! hash changes which shard owns what, so all shards of one invocation
//! must run the same apisync version (docs/sharding.md).

use std::fmt;
use std::str::FromStr;

use crate::plan::{JobPlan, WriteMode};

/// Set by Kubernetes in every pod of an Indexed Job: the pod's index.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The number of shards; the manifest sets it equal to `completions`.
pub const COUNT_ENV: &str = "APISYNC_SHARD_COUNT";
/// The id every shard of one invocation shares (the Job's uid on Kubernetes).
pub const INVOCATION_ENV: &str = "APISYNC_INVOCATION";

/// The name of the assignment hash, as docs/sharding.md gives it.
pub const ASSIGNMENT: &str = "fnv1a64-fmix64";

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's 64-bit finalizer: an avalanche step, every output bit
/// depends on every input bit.
pub fn fmix64(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The assignment hash of `bytes`: `fmix64(fnv1a64(bytes))`.
pub fn assignment_hash(bytes: impl IntoIterator<Item = u8>) -> u64 {
    fmix64(fnv1a64(bytes))
}

/// The shard of one (job, partition) stream of a job that can be split.
pub fn stream_shard(job: &str, partition: &str, count: u32) -> u32 {
    let bytes = job
        .bytes()
        .chain(std::iter::once(0x1F))
        .chain(partition.bytes());
    reduce(assignment_hash(bytes), count)
}

/// The shard of a job that runs whole: hash of its name alone.
pub fn job_shard(job: &str, count: u32) -> u32 {
    reduce(assignment_hash(job.bytes()), count)
}

fn reduce(hash: u64, count: u32) -> u32 {
    // The remainder is below `count`, so it fits in a u32.
    u32::try_from(hash % u64::from(count.max(1))).unwrap_or(0)
}

/// Whether `job`'s streams may go to different shards. A replace-mode job
/// swaps its staging table in once every partition is in, and an
/// unpartitioned job is one stream: both go whole to [`job_shard`].
pub fn splits(job: &JobPlan) -> bool {
    job.partitions.is_some() && job.output.mode != WriteMode::Replace
}

/// The shard that owns the stream `partition` of `job`.
pub fn owner(job: &JobPlan, partition: &str, count: u32) -> u32 {
    if splits(job) {
        stream_shard(&job.name, partition, count)
    } else {
        job_shard(&job.name, count)
    }
}

/// `INDEX/COUNT`, 0-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl ShardSpec {
    fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 {
            return Err("COUNT must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "INDEX {index} is not below COUNT {count} (shards are numbered from 0 to {})",
                count - 1
            ));
        }
        Ok(ShardSpec { index, count })
    }
}

impl FromStr for ShardSpec {
    type Err = String;

    /// `INDEX/COUNT`, e.g. `0/4`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not INDEX/COUNT (for example 0/4)"))?;
        let number = |part: &str, what: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| format!("{what} in {text:?} is not a whole number"))
        };
        ShardSpec::new(number(index, "INDEX")?, number(count, "COUNT")?)
    }
}

/// A sharded run, as the command line asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharding {
    pub spec: ShardSpec,
    /// What every shard of this invocation shares.
    pub invocation: String,
    /// Take unclaimed or orphaned streams of other shards once done.
    pub steal: bool,
}

/// Combine `--shard`, `--invocation` and `--steal` with the environment
/// (`env` looks a variable up; empty counts as unset). None: an unsharded
/// run, exactly as without these flags.
pub fn resolve_sharding(
    shard: Option<ShardSpec>,
    invocation: Option<String>,
    steal: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Sharding>, String> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let spec = match shard {
        Some(spec) => Some(spec),
        None => match (env(INDEX_ENV), env(COUNT_ENV)) {
            (None, None) => None,
            (Some(index), Some(count)) => {
                let parse = |name: &str, value: &str| {
                    value.trim().parse::<u32>().map_err(|_| {
                        format!("{name}={value:?} is not a whole number (hint: {COUNT_ENV} is the Job's `completions`)")
                    })
                };
                let spec = ShardSpec::new(parse(INDEX_ENV, &index)?, parse(COUNT_ENV, &count)?)
                    .map_err(|message| {
                        format!("{INDEX_ENV}={index}, {COUNT_ENV}={count}: {message}")
                    })?;
                Some(spec)
            }
            (None, Some(count)) => {
                return Err(format!(
                    "{COUNT_ENV}={count} is set but {INDEX_ENV} is not (hint: pass --shard INDEX/{count}, \
                     or run in a Kubernetes Indexed Job, which sets {INDEX_ENV})"
                ));
            }
            (Some(index), None) => {
                return Err(format!(
                    "{INDEX_ENV}={index} is set (a Kubernetes Indexed Job) but {COUNT_ENV} is not \
                     (hint: set {COUNT_ENV} to the Job's `completions`, or pass --shard {index}/COUNT)"
                ));
            }
        },
    };
    let invocation = invocation
        .filter(|v| !v.trim().is_empty())
        .or_else(|| env(INVOCATION_ENV));
    let Some(spec) = spec else {
        if steal {
            return Err(format!(
                "--steal takes streams of other shards, so it needs a sharded run \
                 (hint: pass --shard INDEX/COUNT, or set {INDEX_ENV} and {COUNT_ENV})"
            ));
        }
        if invocation.is_some() {
            return Err(format!(
                "--invocation ({INVOCATION_ENV}) only applies to a sharded run \
                 (hint: pass --shard INDEX/COUNT too, or unset {INVOCATION_ENV})"
            ));
        }
        return Ok(None);
    };
    let Some(invocation) = invocation else {
        if spec.count == 1 && !steal {
            return Ok(None);
        }
        return Err(format!(
            "shard {spec}: every shard of a sharded run must share an invocation id \
             (hint: pass --invocation ID or set {INVOCATION_ENV}, the same on every shard and on \
             reruns of the same run; deploy/kubernetes/indexed-job.yaml sets it from the Job's uid)"
        ));
    };
    let invocation = invocation.trim().to_string();
    if invocation.len() > 200 || invocation.chars().any(char::is_control) {
        return Err(format!(
            "invocation id {invocation:?}: at most 200 characters, none of them control characters"
        ));
    }
    Ok(Some(Sharding {
        spec,
        invocation,
        steal,
    }))
}

#[cfg(test)]
mod tests;
