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
