//! The `reprise` binary: parses the command line and exits with the documented code.

fn main() -> std::process::ExitCode {
    reprise_ops::cli::main()
}
