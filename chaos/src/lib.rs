//! reprise-chaos: the suite that judges the store. Cluster backends (local processes),
//! workloads that record every operation's invocation, completion and outcome, checkers
//! (linearizability, lost writes, convergence), and drills that inject faults and report.

pub mod backend;
