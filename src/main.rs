//! The `mockops` binary: parses the command line and hands over to `mockops::cli`.

/// mimalloc: the gateway allocates per request on several threads, where glibc's allocator
/// spends a large share of the time (see the gateway benchmark in the README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    mockops::cli::main()
}
