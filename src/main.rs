//! The `mockops` binary: parses the command line and hands over to `mockops::cli`.

fn main() -> std::process::ExitCode {
    mockops::cli::main()
}
