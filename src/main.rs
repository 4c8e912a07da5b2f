//! The `apisync` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    apisync::cli::main()
}
