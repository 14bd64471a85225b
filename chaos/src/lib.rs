//! reprise-chaos: the suite that judges the store. Cluster backends (local processes),
//! workloads that record every operation's invocation, completion and outcome, checkers
//! (linearizability, lost writes, bank invariant, convergence), and drills that inject
//! faults, run the recovery steps and report RTO, RPO and every verdict.

pub mod backend;
pub mod checker;
pub mod drill;
pub mod history;
pub mod recorder;
pub mod sim;
pub mod workload;
