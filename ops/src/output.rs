//! Output format (`-o table|json`), printing, and the error type that carries the
//! documented exit codes:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | a check failed (a compare-and-swap was not applied) |
//! | 2 | usage or runtime error |
//! | 3 | key not found |
//! | 4 | cluster unavailable (no endpoint reachable, or no leader) |

use std::process::ExitCode;

use clap::ValueEnum;
use reprise_api::ClientError;
use serde::Serialize;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A command failure and its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    NotApplied(String),
    #[error("{0:#}")]
    Runtime(#[from] anyhow::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    /// A signal (SIGINT, SIGTERM, SIGHUP) stopped the command; what it had started was
    /// stopped with it.
    #[error("{0}")]
    Interrupted(String),
}

impl CliError {
    /// The documented exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::NotApplied(_) => 1,
            CliError::Runtime(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Unavailable(_) => 4,
            CliError::Interrupted(_) => 130,
        })
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Unreachable { .. } | ClientError::NoLeader { .. } => {
                CliError::Unavailable(e.to_string())
            }
            other => CliError::Runtime(other.into()),
        }
    }
}

/// Result of a CLI command.
pub type CliResult<T = ()> = Result<T, CliError>;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> CliResult {
    let text = serde_json::to_string_pretty(value).map_err(anyhow::Error::from)?;
    println!("{text}");
    Ok(())
}

/// Renders bytes for humans: UTF-8 as is, anything else as hex.
pub fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => format!(
            "0x{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// Prints rows as an aligned table with a header line.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
