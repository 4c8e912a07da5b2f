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
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// Known values: these must never change, or shards of different
    /// apisync versions (a rolling upgrade) would disagree. Computed with
    /// an independent implementation (a few lines of Python over the
    /// published FNV-1a and fmix64 constants).
    #[test]
    fn the_hash_is_fnv1a64_then_fmix64_with_pinned_values() {
        assert_eq!(fnv1a64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(*b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(assignment_hash(*b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(assignment_hash(*b"a"), 0x82a2_a958_a9be_ce5b);
        assert_eq!(assignment_hash(*b"foobar"), 0x2c22_1949_22d1_672b);
        assert_eq!(assignment_hash(*b"orders\x1feu"), 0x4e12_72a7_ae2e_fc6a);
        assert_eq!(
            stream_shard("orders", "eu", 1_000_003),
            u32::try_from(0x4e12_72a7_ae2e_fc6a_u64 % 1_000_003).unwrap()
        );
        assert_eq!(
            job_shard("orders", 7),
            u32::try_from(assignment_hash(*b"orders") % 7).unwrap()
        );
        let pinned: Vec<u32> = ["p000", "p001", "p002", "p003", "p004", "p005"]
            .iter()
            .map(|p| stream_shard("items", p, 4))
            .collect();
        assert_eq!(pinned, [2, 2, 1, 0, 0, 2]);
        let jobs: Vec<u32> = ["accounts", "contacts", "orders", "offset", "events"]
            .iter()
            .map(|j| job_shard(j, 4))
            .collect();
        assert_eq!(jobs, [1, 2, 1, 0, 3]);
    }

    /// Realistic job names, for the spread tests.
    const JOB_NAMES: [&str; 24] = [
        "accounts",
        "contacts",
        "orders",
        "invoices",
        "offset",
        "items",
        "users",
        "events",
        "customers",
        "charges",
        "refunds",
        "payouts",
        "tickets",
        "issues",
        "pulls",
        "commits",
        "deals",
        "companies",
        "products",
        "variants",
        "subscriptions",
        "messages",
        "channels",
        "pages",
    ];

    /// How many of `keys` each of `count` shards gets from `shard`.
    fn spread(keys: &[String], count: u32, shard: impl Fn(&str) -> u32) -> Vec<usize> {
        let mut per_shard = vec![0; count as usize];
        for key in keys {
            let index = shard(key);
            assert!(index < count);
            assert_eq!(shard(key), index, "stable");
            per_shard[index as usize] += 1;
        }
        per_shard
    }

    /// Realistic partition keys (a year of days, 301 numeric parent ids,
    /// zero-padded names) spread over 2, 3, 4 and 8 shards as a random
    /// assignment would: each shard within 3 standard deviations
    /// (`3 * sqrt(even share)`, binomial) of an even share.
    #[test]
    fn realistic_partition_keys_spread_evenly_over_any_count() {
        let day = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        let sets: [(&str, Vec<String>); 3] = [
            (
                "daily",
                (0..365)
                    .map(|n| (day + chrono::Days::new(n)).to_string())
                    .collect(),
            ),
            ("contacts", (1..=301).map(|n| n.to_string()).collect()),
            ("items", (0..200).map(|n| format!("p{n:03}")).collect()),
        ];
        for count in [2, 3, 4, 8] {
            for (job, keys) in &sets {
                let per_shard = spread(keys, count, |key| stream_shard(job, key, count));
                let even = keys.len() as f64 / f64::from(count);
                for n in &per_shard {
                    assert!(
                        (*n as f64 - even).abs() <= 3.0 * even.sqrt(),
                        "{job} over {count} shards: {per_shard:?}"
                    );
                }
            }
        }
    }

    /// Every bit of the assignment depends on every byte: flipping any one
    /// bit of a job name moves it to another of four shards about 3 times
    /// in 4, as a random assignment would. (Plain FNV-1a: 1 in 4, since
    /// bits 2 to 7 of a byte never reach the two low bits, which is how
    /// four job names of one project all landed on one shard.)
    #[test]
    fn any_bit_of_a_name_moves_it_as_a_random_assignment_would() {
        let (mut flips, mut moved) = (0u32, 0u32);
        for name in JOB_NAMES {
            let shard = job_shard(name, 4);
            for at in 0..name.len() {
                for bit in 0..8 {
                    let mut bytes = name.as_bytes().to_vec();
                    bytes[at] ^= 1 << bit;
                    flips += 1;
                    moved += u32::from(reduce(assignment_hash(bytes), 4) != shard);
                }
            }
        }
        let share = f64::from(moved) / f64::from(flips);
        assert!(
            (0.65..=0.85).contains(&share),
            "{moved} of {flips} flips moved"
        );
        // Names that differ in one character's high bits (1, 5, 9) used
        // to share a shard.
        let tenants: BTreeSet<u32> = ["tenant_1", "tenant_5", "tenant_9"]
            .iter()
            .map(|name| job_shard(name, 4))
            .collect();
        assert!(tenants.len() > 1, "{tenants:?}");
        let per_shard = spread(&JOB_NAMES.map(String::from), 4, |name| job_shard(name, 4));
        assert!(per_shard.iter().all(|n| *n >= 2), "{per_shard:?}");
    }

    #[test]
    fn replace_and_unpartitioned_jobs_go_whole_to_the_shard_of_their_name() {
        let mut job = crate::run::test_support::job("snapshot");
        job.partitions = Some(crate::plan::PartitionsPlan::Values(
            (0..50).map(|n| n.to_string()).collect(),
        ));
        job.output.mode = WriteMode::Replace;
        let whole = job_shard("snapshot", 4);
        assert!((0..50).all(|n| owner(&job, &n.to_string(), 4) == whole));
        job.output.mode = WriteMode::Append;
        let shards: std::collections::BTreeSet<u32> =
            (0..50).map(|n| owner(&job, &n.to_string(), 4)).collect();
        assert!(shards.len() > 1, "an append job is split: {shards:?}");
        job.partitions = None;
        assert_eq!(owner(&job, "", 4), whole);
    }

    #[test]
    fn shard_flags_parse_with_clear_errors() {
        assert_eq!(
            "1/4".parse::<ShardSpec>(),
            Ok(ShardSpec { index: 1, count: 4 })
        );
        let errors: Vec<String> = ["4/4", "0/0", "x/4", "3", "-1/4"]
            .iter()
            .map(|text| text.parse::<ShardSpec>().unwrap_err())
            .collect();
        insta::assert_snapshot!(errors.join("\n"));
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn kubernetes_variables_are_the_defaults_and_the_flag_wins() {
        let k8s = env_of(&[
            (INDEX_ENV, "2"),
            (COUNT_ENV, "4"),
            (INVOCATION_ENV, "job-uid"),
        ]);
        let sharding = resolve_sharding(None, None, true, &k8s).unwrap().unwrap();
        assert_eq!(
            sharding,
            Sharding {
                spec: ShardSpec { index: 2, count: 4 },
                invocation: "job-uid".into(),
                steal: true
            }
        );
        let flag = ShardSpec { index: 0, count: 2 };
        let sharding = resolve_sharding(Some(flag), Some("mine".into()), false, &k8s)
            .unwrap()
            .unwrap();
        assert_eq!(sharding.spec, flag);
        assert_eq!(sharding.invocation, "mine");
        // Neither: unsharded, as without the flags.
        assert_eq!(resolve_sharding(None, None, false, env_of(&[])), Ok(None));
        // One shard without an invocation is an ordinary run.
        let one = ShardSpec { index: 0, count: 1 };
        assert_eq!(
            resolve_sharding(Some(one), None, false, env_of(&[])),
            Ok(None)
        );
    }

    #[test]
    fn incomplete_sharding_is_refused_with_what_to_set() {
        let errors: Vec<String> = [
            resolve_sharding(
                Some(ShardSpec { index: 1, count: 4 }),
                None,
                false,
                env_of(&[]),
            ),
            resolve_sharding(None, None, false, env_of(&[(INDEX_ENV, "1")])),
            resolve_sharding(None, None, false, env_of(&[(COUNT_ENV, "4")])),
            resolve_sharding(
                None,
                None,
                false,
                env_of(&[(INDEX_ENV, "4"), (COUNT_ENV, "4"), (INVOCATION_ENV, "x")]),
            ),
            resolve_sharding(None, None, true, env_of(&[])),
            resolve_sharding(None, Some("x".into()), false, env_of(&[])),
        ]
        .into_iter()
        .map(|result| result.unwrap_err())
        .collect();
        insta::assert_snapshot!(errors.join("\n"));
    }
}
