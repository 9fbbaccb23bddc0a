//! The `mockops` binary: everything lives in the library; see `mockops::cli`.

fn main() -> std::process::ExitCode {
    mockops::cli::main()
}
