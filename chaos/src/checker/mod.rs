//! Checkers: each judges one property of a run and returns a verdict. A checker that
//! cannot decide (out of time, missing data) says Unknown, never Pass.

pub mod bank;
pub mod convergence;
pub mod hlc;
pub mod linearizability;
pub mod registers;
pub mod restore;
pub mod search;
pub mod set;

use serde::Serialize;

/// What a checker concluded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// An anomaly; `details` lists the offending operations or values.
    Fail {
        details: Vec<String>,
    },
    Unknown {
        reason: String,
    },
}

/// One checker's result in a report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckerResult {
    pub checker: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// One line: what was checked and what was found.
    pub summary: String,
}

impl CheckerResult {
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }
}
