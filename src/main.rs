//! The `apisync` binary: everything lives in the library; see `cli`.

/// mimalloc instead of the system allocator: a page's records are allocated
/// on the stream's thread and freed on the writer's, and glibc's cross-thread
/// frees sat on the writer's path (about 9% of its time on 1M records);
/// measured +4-5% records/s and less CPU per record (docs/benchmarks.md).
/// Built without transparent huge pages (`no_thp`), which put peak RSS at
/// 52 MiB instead of 24.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    apisync::cli::main()
}
