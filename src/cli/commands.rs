//! One function per command: compose the stages, print results to stdout,
//! and say which exit code applies.

use super::args::NOW_ENV;
use super::args::{BackfillArgs, Cli, Command, GlobalArgs, ResetArgs, RunArgs};
use super::execute::execute;
use super::project::{clock, load, load_one_job};
use super::{Exit, status};
use crate::plan::{JobPlan, ProjectPlan, WriteMode};
use crate::run::{JobMode, date_slices, select_due, select_jobs};
use crate::store::{Reset, Store, StreamKey};

pub async fn dispatch(cli: Cli) -> Exit {
    let global = &cli.global;
    match cli.command {
        Command::Validate => validate(global),
        Command::Run(args) => run(global, args).await,
        Command::Backfill(args) => backfill(global, args).await,
        Command::Status(args) => status::show(global, &args),
        Command::Reset(args) => reset(global, &args),
        Command::Demo(args) => super::demo::demo(global, &args).await,
        Command::Init(args) => super::init::init(global, &args).await,
        Command::Completions(args) => super::completions::print(&args),
        Command::Preview(args) => super::preview::preview(global, &args).await,
        Command::Schema(args) => print_schema(&args),
    }
}

/// `apisync schema`: the JSON Schema, derived from the parsing types.
fn print_schema(args: &super::args::SchemaArgs) -> Exit {
    let kind = match args.file {
        super::args::SchemaFile::Project => crate::definition::SchemaKind::Project,
        super::args::SchemaFile::Job => crate::definition::SchemaKind::Job,
    };
    print!("{}", crate::definition::schema_json(kind));
    Exit::Ok
}

fn validate(global: &GlobalArgs) -> Exit {
    match load(global) {
        Ok(plan) => {
            let missing: Vec<&crate::plan::Diagnostic> = plan
                .jobs
                .iter()
                .flat_map(|job| &job.request.missing_env)
                .collect();
            if !missing.is_empty() {
                for problem in &missing {
                    eprintln!("{problem}");
                }
                eprintln!("{} environment variable(s) not set", missing.len());
                return Exit::Usage;
            }
            println!(
                "ok: {} job(s), {} auth(s), database {}",
                plan.jobs.len(),
                plan.auths.keys().filter(|k| !k.starts_with("job:")).count(),
                plan.settings.database
            );
            Exit::Ok
        }
        Err(exit) => exit,
    }
}

async fn run(global: &GlobalArgs, args: RunArgs) -> Exit {
    let plan = match load(global) {
        Ok(plan) => plan,
        Err(exit) => return exit,
    };
    let jobs = match select_jobs(&plan, &args.jobs, &args.tags) {
        Ok(jobs) => jobs,
        Err(err) => {
            eprintln!("error: {err}");
            return Exit::Usage;
        }
    };
    let shard = match crate::run::resolve_sharding(
        args.shard,
        args.invocation.clone(),
        args.steal,
        |name| std::env::var(name).ok(),
    ) {
        Ok(shard) => shard,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Usage;
        }
    };
    if shard.is_some() && args.wait {
        eprintln!(
            "error: --wait waits for job leases, which a sharded run does not take \
             (every stream is claimed instead; hint: drop --wait)"
        );
        return Exit::Usage;
    }
    let jobs = if args.due {
        match due_jobs(&plan, jobs, shard.as_ref()) {
            Ok(jobs) => jobs,
            Err(exit) => return exit,
        }
    } else {
        jobs
    };
    if jobs.is_empty() && args.due {
        println!("no job is due");
        return Exit::Ok;
    }
    let mode = JobMode {
        full_refresh: args.full_refresh,
        backfill: None,
        wait_for_lease: args.wait,
        stall_timeout: Some(args.stall_timeout),
        shard,
    };
    if args.dry_run {
        return print_dry_run(&plan, &jobs, &mode);
    }
    execute(global, &plan, jobs, mode, &args.metrics).await
}

/// `run --due`: keep the jobs whose schedule says they are due now.
/// Sharded, every shard decides as of the invocation's start and leaves
/// the invocation's own runs out, so a shard that starts late does not
/// skip a job because an earlier shard just ran its part.
fn due_jobs(
    plan: &ProjectPlan,
    jobs: Vec<crate::plan::JobPlan>,
    shard: Option<&crate::run::Sharding>,
) -> Result<Vec<crate::plan::JobPlan>, Exit> {
    let mut now = match clock() {
        Ok(now) => now,
        Err(message) => {
            eprintln!("error: {message}");
            return Err(Exit::Usage);
        }
    };
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    let starts = Store::open(&plan.settings.database).and_then(|mut store| match shard {
        None => store.last_success_starts(&names),
        Some(shard) => {
            let started = store.invocation_started_at(&shard.invocation)?;
            if std::env::var_os(NOW_ENV).is_none()
                && let Ok(at) = chrono::DateTime::parse_from_rfc3339(&started)
            {
                now = at.with_timezone(&chrono::Utc);
            }
            store.last_success_starts_before(&names, &shard.invocation)
        }
    });
    let starts = match starts {
        Ok(starts) => starts,
        Err(err) => {
            eprintln!("error: {err}");
            return Err(Exit::Failed);
        }
    };
    let (due, later) = select_due(jobs, &starts, now);
    for (job, at) in later {
        tracing::info!(
            job = %job.name,
            next_due = %at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "not due yet"
        );
    }
    Ok(due)
}

fn print_dry_run(plan: &ProjectPlan, jobs: &[crate::plan::JobPlan], mode: &JobMode) -> Exit {
    match crate::run::dry_run(plan, jobs, mode) {
        Ok(text) => {
            print!("{text}");
            println!("(dry run: nothing was sent)");
            Exit::Ok
        }
        Err(err) => {
            eprintln!("error: {err}");
            Exit::Failed
        }
    }
}

async fn backfill(global: &GlobalArgs, args: BackfillArgs) -> Exit {
    let plan = match load(global) {
        Ok(plan) => plan,
        Err(exit) => return exit,
    };
    let jobs = match select_jobs(&plan, std::slice::from_ref(&args.job), &[]) {
        Ok(jobs) => jobs,
        Err(err) => {
            eprintln!("error: {err}");
            return Exit::Usage;
        }
    };
    if let Some(job) = jobs.first()
        && let Err(message) = backfillable(job)
    {
        eprintln!("error: job \"{}\": {message}", job.name);
        return Exit::Usage;
    }
    let slices = match date_slices(&args.from, &args.to, args.step, chrono::Utc::now()) {
        Ok(slices) => slices,
        Err(message) => {
            eprintln!("error: backfill range: {message}");
            return Exit::Usage;
        }
    };
    let mode = JobMode {
        full_refresh: false,
        backfill: Some(slices),
        wait_for_lease: args.wait,
        stall_timeout: None,
        shard: None,
    };
    execute(global, &plan, jobs, mode, &args.metrics).await
}

/// A backfill fills a date range into the job's table. It cannot replace
/// the table (that would keep only the range), and it cannot stand in for
/// partitions that are not dates (their `{partition}` would be undefined).
fn backfillable(job: &crate::plan::JobPlan) -> Result<(), String> {
    if job.output.mode == crate::plan::WriteMode::Replace {
        return Err(
            "it writes in replace mode, so a backfill would replace the whole table \
                    with only the range (hint: backfill jobs whose output.mode is merge or append)"
                .into(),
        );
    }
    match &job.partitions {
        None | Some(crate::plan::PartitionsPlan::Dates { .. }) => Ok(()),
        Some(_) => Err(
            "its partitions are values or come from another job, so date slices \
                        cannot stand in for them (hint: backfill a job without partitions or \
                        with dates partitions; use {partition.start} and {partition.end})"
                .into(),
        ),
    }
}

/// Why `reset` would leave a job in a state that loses rows, if it would.
fn reset_refusal(job: &JobPlan, args: &ResetArgs) -> Option<String> {
    let replace = job.output.mode == WriteMode::Replace;
    if replace && args.keep_marks {
        // A finished partition's mark moved past rows that only the
        // staging table (dropped by reset) holds.
        return Some(
            "--keep-marks cannot be used with a replace job: its marks describe rows of the staging table that reset drops (hint: `apisync reset JOB` rebuilds the table from the start)".into(),
        );
    }
    if args.partition.is_some() && replace {
        return Some(
            "--partition cannot be used with a replace job: its staging table holds every partition (hint: reset the whole job)".into(),
        );
    }
    if args.partition.is_some() && job.partitions.is_none() {
        return Some("--partition: the job has no partitions (hint: leave it out)".into());
    }
    None
}

/// Whether `reset --partition` would forget anything of `stream`: for a
/// key that names nothing saved (misspelt, written with spaces, or a
/// partition already synced) it says so instead of "forgotten".
fn has_state(
    database: &crate::plan::Database,
    stream: &StreamKey,
) -> Result<bool, crate::store::StoreError> {
    let Some(reader) = crate::store::StoreReader::open_to_peek(database)? else {
        return Ok(false);
    };
    let finished = reader.finished_among(&stream.job, &[stream.partition.as_str()])?;
    Ok(reader.checkpoint(stream)?.is_some()
        || reader.mark(stream)?.is_some()
        || !finished.is_empty())
}

fn reset(global: &GlobalArgs, args: &ResetArgs) -> Exit {
    let (plan, job) = match load_one_job(global, &args.job) {
        Ok(loaded) => loaded,
        Err(exit) => return exit,
    };
    if let Some(refusal) = reset_refusal(&job, args) {
        eprintln!("error: job \"{}\": {refusal}", job.name);
        return Exit::Usage;
    }
    let (reset, forgotten) = match args.keep_marks {
        true => (
            Reset::KeepMarks,
            "checkpoints forgotten, high-water marks kept",
        ),
        false => (Reset::Marks, "checkpoints and high-water marks forgotten"),
    };
    if let Some(partition) = &args.partition {
        let stream = StreamKey::new(job.name.clone(), partition.clone());
        match has_state(&plan.settings.database, &stream) {
            Ok(true) => {}
            // A partition synced in a finished pass has nothing saved
            // either: not an error, but not "forgotten" (a misspelt key
            // looks the same, hence the hint).
            Ok(false) => {
                eprintln!(
                    "warning: job \"{}\" has nothing saved for partition {partition:?} (no checkpoint, mark or finished stream), so nothing was forgotten (hint: if that is not what you expected, `apisync status {}` lists the keys of its partitions; a `fields` key is the values by name as JSON, names sorted, without spaces, such as {{\"brand\":\"7\",\"id\":\"42\"}})",
                    job.name, job.name
                );
                println!(
                    "job \"{}\" (partition \"{partition}\"): nothing to forget",
                    job.name
                );
                return Exit::Ok;
            }
            Err(err) => {
                eprintln!("error: {err}");
                return Exit::Failed;
            }
        }
    }
    let result = Store::open(&plan.settings.database).and_then(|mut store| match &args.partition {
        Some(partition) => {
            store.reset_stream(&StreamKey::new(job.name.clone(), partition.clone()), reset)
        }
        None => store.reset_job(&job.name, &job.output.table, reset),
    });
    match result {
        Ok(()) => {
            let scope = match &args.partition {
                Some(partition) => format!(" (partition \"{partition}\")"),
                None => String::new(),
            };
            println!("job \"{}\"{scope}: {forgotten}", args.job);
            Exit::Ok
        }
        Err(err) => {
            eprintln!("error: {err}");
            Exit::Failed
        }
    }
}
