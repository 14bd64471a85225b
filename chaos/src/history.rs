//! Recorded client operations shared by every checker: the register input/output
//! vocabulary and its sequential specification, the `Op` record a workload writes for each
//! call, grouping by key, structural validation of a history before any checker reads it,
//! and (in tests) random history generators with a brute-force reference checker.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// A register value: `None` = key absent. Workloads write unique values, so each read maps
/// to one write.
pub type Value = Option<u64>;

/// What a client asked the store to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Input {
    Read,
    Write(u64),
    Delete,
    Cas { expected: Value, new: u64 },
}

/// What the store answered when the operation succeeded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Output {
    Read(Value),
    Write,
    Delete,
    Cas { applied: bool },
}

/// How an operation ended, as far as the client knows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    Ok(Output),
    /// Definitely not applied (e.g. refused before being proposed).
    Failed,
    /// Timed out / connection lost after sending: may or may not have taken effect, at any time
    /// after invocation.
    Unknown,
}

/// One client operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Op {
    /// Unique per history.
    pub id: u64,
    /// Client that issued it (a client issues one op at a time).
    pub process: u64,
    pub key: String,
    /// Monotonic time of invocation.
    pub invoke_ns: u64,
    /// Monotonic time of completion; ignored for `Outcome::Unknown`.
    pub complete_ns: u64,
    pub input: Input,
    pub outcome: Outcome,
}

impl Input {
    /// The register's sequential specification: the output this input produces in `state`
    /// and the state it leaves behind.
    pub fn apply(&self, state: Value) -> (Output, Value) {
        match self {
            Input::Read => (Output::Read(state), state),
            Input::Write(v) => (Output::Write, Some(*v)),
            Input::Delete => (Output::Delete, None),
            Input::Cas { expected, new } if *expected == state => {
                (Output::Cas { applied: true }, Some(*new))
            }
            Input::Cas { .. } => (Output::Cas { applied: false }, state),
        }
    }
}

impl Op {
    /// Completion time, or `None` when the outcome is unknown (the op may land at any later time).
    pub fn known_completion_ns(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Unknown => None,
            Outcome::Ok(_) | Outcome::Failed => Some(self.complete_ns),
        }
    }

    /// Completion time with unknown outcomes treated as completing at +infinity.
    pub fn effective_completion_ns(&self) -> u64 {
        self.known_completion_ns().unwrap_or(u64::MAX)
    }

    /// True when the two operations' intervals overlap. Touching intervals (one completes at
    /// the instant the other is invoked) count as overlapping.
    pub fn overlaps(&self, other: &Op) -> bool {
        self.invoke_ns <= other.effective_completion_ns()
            && other.invoke_ns <= self.effective_completion_ns()
    }

    /// The value a successful op saw in the register: a read's result, or the expected value
    /// of a CAS that reported it applied.
    pub fn observed_value(&self) -> Option<Value> {
        match (&self.input, &self.outcome) {
            (Input::Read, Outcome::Ok(Output::Read(value))) => Some(*value),
            (Input::Cas { expected, .. }, Outcome::Ok(Output::Cas { applied: true })) => {
                Some(*expected)
            }
            _ => None,
        }
    }

    /// The value this op stored, or may have stored (its outcome is unknown), if any.
    pub fn possibly_written_value(&self) -> Option<u64> {
        match (&self.input, &self.outcome) {
            (Input::Write(v), Outcome::Ok(_) | Outcome::Unknown) => Some(*v),
            (Input::Cas { new, .. }, Outcome::Ok(Output::Cas { applied: true }))
            | (Input::Cas { new, .. }, Outcome::Unknown) => Some(*new),
            _ => None,
        }
    }

    /// The value this op would leave in the register if it took effect (`None` for reads).
    pub fn written_value(&self) -> Option<Value> {
        match self.input {
            Input::Read => None,
            Input::Write(v) => Some(Some(v)),
            Input::Delete => Some(None),
            Input::Cas { new, .. } => Some(Some(new)),
        }
    }
}

/// Renders a register value for operators: a number, or `absent`.
pub fn display_value(value: Value) -> String {
    match value {
        Some(v) => v.to_string(),
        None => "absent".to_string(),
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Read => write!(f, "read"),
            Input::Write(v) => write!(f, "write {v}"),
            Input::Delete => write!(f, "delete"),
            Input::Cas { expected, new } => {
                write!(f, "cas {} -> {new}", display_value(*expected))
            }
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(Output::Read(v)) => write!(f, "returned {}", display_value(*v)),
            Outcome::Ok(Output::Cas { applied: true }) => write!(f, "applied"),
            Outcome::Ok(Output::Cas { applied: false }) => write!(f, "not applied"),
            Outcome::Ok(Output::Write | Output::Delete) => write!(f, "ok"),
            Outcome::Failed => write!(f, "failed"),
            Outcome::Unknown => write!(f, "outcome unknown"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "op {} (process {}, key {:?}: {}, {}, invoked {} ns, ",
            self.id, self.process, self.key, self.input, self.outcome, self.invoke_ns
        )?;
        match self.known_completion_ns() {
            Some(t) => write!(f, "completed {t} ns)"),
            None => write!(f, "never completed)"),
        }
    }
}

/// Why a history cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryError {
    /// A completed op claims to finish before it started.
    CompletesBeforeInvoke {
        id: u64,
        invoke_ns: u64,
        complete_ns: u64,
    },
    /// Two ops share an id.
    DuplicateId { id: u64 },
    /// The output kind does not answer the input kind (e.g. a read answered with `Write`).
    OutputMismatch {
        id: u64,
        input: Input,
        output: Output,
    },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::CompletesBeforeInvoke {
                id,
                invoke_ns,
                complete_ns,
            } => write!(
                f,
                "op {id} completes at {complete_ns} ns, before its invocation at {invoke_ns} ns"
            ),
            HistoryError::DuplicateId { id } => write!(f, "op id {id} appears more than once"),
            HistoryError::OutputMismatch { id, input, output } => {
                write!(
                    f,
                    "op {id}: output {output:?} does not answer input {input:?}"
                )
            }
        }
    }
}

impl std::error::Error for HistoryError {}

fn output_answers(input: &Input, output: &Output) -> bool {
    matches!(
        (input, output),
        (Input::Read, Output::Read(_))
            | (Input::Write(_), Output::Write)
            | (Input::Delete, Output::Delete)
            | (Input::Cas { .. }, Output::Cas { .. })
    )
}

/// Checks the structural invariants every checker relies on: unique ids, completed ops
/// completing no earlier than they were invoked, and outputs of the kind their input asks for.
pub fn validate(ops: &[Op]) -> Result<(), HistoryError> {
    let mut seen = HashSet::with_capacity(ops.len());
    for op in ops {
        if !seen.insert(op.id) {
            return Err(HistoryError::DuplicateId { id: op.id });
        }
        if let Some(complete_ns) = op.known_completion_ns() {
            if complete_ns < op.invoke_ns {
                return Err(HistoryError::CompletesBeforeInvoke {
                    id: op.id,
                    invoke_ns: op.invoke_ns,
                    complete_ns,
                });
            }
        }
        if let Outcome::Ok(output) = &op.outcome {
            if !output_answers(&op.input, output) {
                return Err(HistoryError::OutputMismatch {
                    id: op.id,
                    input: op.input.clone(),
                    output: output.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Groups ops by key, in key order; within a key, ops keep their order in `ops`.
pub fn ops_by_key(ops: &[Op]) -> BTreeMap<&str, Vec<&Op>> {
    let mut keys: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        keys.entry(op.key.as_str()).or_default().push(op);
    }
    keys
}

/// A whole recorded history.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct History(pub Vec<Op>);

impl History {
    pub fn ops(&self) -> &[Op] {
        &self.0
    }

    pub fn by_key(&self) -> BTreeMap<&str, Vec<&Op>> {
        ops_by_key(&self.0)
    }

    pub fn validate(&self) -> Result<(), HistoryError> {
        validate(&self.0)
    }
}

/// Test support shared by the checkers' tests: generators of random histories and a
/// brute-force reference checker.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Input, Op, Outcome, Output, Value};
    use rand::rngs::StdRng;
    use rand::Rng;
    use std::collections::BTreeMap;

    /// A linearizable history of `keys × ops_per_key` ops from `processes` sequential clients,
    /// made by running the register spec at a random point inside each op's interval. About
    /// 3% of ops fail (never applied) and 3% time out (applied or not, at random).
    pub(crate) fn random_valid_history(
        rng: &mut StdRng,
        keys: usize,
        ops_per_key: usize,
        processes: u64,
    ) -> Vec<Op> {
        let planned = plan_ops(rng, keys, ops_per_key, processes);
        simulate(rng, planned)
    }

    /// A planned op before outputs are known: its interval, linearization point and fate.
    struct Planned {
        op: Op,
        point_ns: u64,
        takes_effect: bool,
    }

    fn random_input(rng: &mut StdRng, next_value: &mut u64) -> Input {
        *next_value += 1;
        match rng.random_range(0..100) {
            0..50 => Input::Read,
            50..80 => Input::Write(*next_value),
            80..92 => Input::Cas {
                expected: None,
                new: *next_value,
            },
            _ => Input::Delete,
        }
    }

    /// Plans `keys × ops_per_key` ops issued by `processes` sequential clients.
    fn plan_ops(rng: &mut StdRng, keys: usize, ops_per_key: usize, processes: u64) -> Vec<Planned> {
        let mut key_order: Vec<usize> = (0..keys * ops_per_key).map(|i| i % keys).collect();
        for i in (1..key_order.len()).rev() {
            key_order.swap(i, rng.random_range(0..=i));
        }
        let mut clocks = vec![0u64; processes as usize];
        let mut next_value = 0;
        let mut planned = Vec::with_capacity(key_order.len());
        for (id, key) in key_order.into_iter().enumerate() {
            let process = rng.random_range(0..processes);
            let invoke_ns = clocks[process as usize] + rng.random_range(0..50);
            let complete_ns = invoke_ns + rng.random_range(1..300);
            clocks[process as usize] = complete_ns;
            let input = random_input(rng, &mut next_value);
            let fate = rng.random_range(0..100);
            let outcome = match fate {
                0..3 => Outcome::Failed,
                3..6 => Outcome::Unknown,
                _ => Outcome::Ok(Output::Write),
            };
            planned.push(Planned {
                point_ns: rng.random_range(invoke_ns..=complete_ns),
                takes_effect: fate >= 6 || (fate >= 3 && rng.random_bool(0.5)),
                op: Op {
                    id: id as u64,
                    process,
                    key: format!("key-{key}"),
                    invoke_ns,
                    complete_ns,
                    input,
                    outcome,
                },
            });
        }
        planned
    }

    /// Runs the sequential register spec at each op's linearization point and fills in outputs.
    fn simulate(rng: &mut StdRng, mut planned: Vec<Planned>) -> Vec<Op> {
        planned.sort_by_key(|p| (p.point_ns, p.op.id));
        let mut state: BTreeMap<String, Value> = BTreeMap::new();
        let mut written: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut ops = Vec::with_capacity(planned.len());
        for Planned {
            mut op,
            takes_effect,
            ..
        } in planned
        {
            let current = state.get(&op.key).copied().flatten();
            if let Input::Cas { expected, .. } = &mut op.input {
                let history = written.get(&op.key).map(Vec::as_slice).unwrap_or(&[]);
                *expected = match rng.random_range(0..3) {
                    0 => current,
                    1 if !history.is_empty() => Some(history[rng.random_range(0..history.len())]),
                    _ => None,
                };
            }
            let (output, next) = op.input.apply(current);
            if let Outcome::Ok(_) = op.outcome {
                op.outcome = Outcome::Ok(output);
            }
            if takes_effect {
                state.insert(op.key.clone(), next);
                if let (Some(value), true) = (next, next != current) {
                    written.entry(op.key.clone()).or_default().push(value);
                }
            }
            ops.push(op);
        }
        ops.sort_by_key(|op| op.id);
        ops
    }

    /// Exhaustive reference for one key: tries every order of every subset of the ops whose
    /// outcome is unknown, without pruning. Failed ops must already be removed.
    pub(crate) fn brute_force_linearizable(ops: &[&Op]) -> bool {
        brute_force_search(ops, &mut vec![false; ops.len()], None)
    }

    /// Exhaustive reference: tries every order of every subset of unknown ops, no pruning.
    fn brute_force_search(ops: &[&Op], placed: &mut Vec<bool>, state: Value) -> bool {
        let pending: Vec<usize> = (0..ops.len())
            .filter(|&i| ops[i].outcome != Outcome::Unknown && !placed[i])
            .collect();
        if pending.is_empty() {
            return true;
        }
        for next in 0..ops.len() {
            let blocked = placed[next]
                || pending
                    .iter()
                    .any(|&i| i != next && ops[i].complete_ns < ops[next].invoke_ns);
            let Some(after) = (!blocked).then(|| spec_allows(ops[next], state)).flatten() else {
                continue;
            };
            placed[next] = true;
            let found = brute_force_search(ops, placed, after);
            placed[next] = false;
            if found {
                return true;
            }
        }
        false
    }

    /// The state after `op` in `state`, if its recorded output (when known) allows it there.
    fn spec_allows(op: &Op, state: Value) -> Option<Value> {
        let (output, next) = op.input.apply(state);
        match &op.outcome {
            Outcome::Ok(recorded) if *recorded != output => None,
            _ => Some(next),
        }
    }

    pub(crate) fn random_small_history(rng: &mut StdRng) -> Vec<Op> {
        let count = rng.random_range(1..=8);
        let mut values: Vec<u64> = Vec::new();
        let pick = |rng: &mut StdRng, values: &[u64]| -> Value {
            match values.len() {
                0 => None,
                n => rng.random_bool(0.8).then(|| values[rng.random_range(0..n)]),
            }
        };
        (0..count as u64)
            .map(|id| {
                let invoke_ns = rng.random_range(0..20);
                let complete_ns = invoke_ns + rng.random_range(0..10);
                let new = id + 1;
                let input = match rng.random_range(0..4) {
                    0 => Input::Read,
                    1 => Input::Write(new),
                    2 => Input::Delete,
                    _ => Input::Cas {
                        expected: pick(rng, &values),
                        new,
                    },
                };
                values.push(new);
                let output = match &input {
                    Input::Read => Output::Read(pick(rng, &values)),
                    Input::Write(_) => Output::Write,
                    Input::Delete => Output::Delete,
                    Input::Cas { .. } => Output::Cas {
                        applied: rng.random_bool(0.5),
                    },
                };
                let outcome = match rng.random_range(0..10) {
                    0 => Outcome::Failed,
                    1 | 2 => Outcome::Unknown,
                    _ => Outcome::Ok(output),
                };
                Op {
                    id,
                    process: id,
                    key: "k".to_string(),
                    invoke_ns,
                    complete_ns,
                    input,
                    outcome,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: u64, key: &str, input: Input, outcome: Outcome) -> Op {
        Op {
            id,
            process: id,
            key: key.to_string(),
            invoke_ns: 10,
            complete_ns: 20,
            input,
            outcome,
        }
    }

    #[test]
    fn sequential_spec_of_each_input() {
        assert_eq!(Input::Read.apply(Some(3)), (Output::Read(Some(3)), Some(3)));
        assert_eq!(Input::Write(4).apply(None), (Output::Write, Some(4)));
        assert_eq!(Input::Delete.apply(Some(4)), (Output::Delete, None));
        let cas = Input::Cas {
            expected: Some(4),
            new: 5,
        };
        assert_eq!(cas.apply(Some(4)), (Output::Cas { applied: true }, Some(5)));
        assert_eq!(cas.apply(None), (Output::Cas { applied: false }, None));
    }

    #[test]
    fn valid_history_passes() {
        let history = History(vec![
            op(1, "a", Input::Write(1), Outcome::Ok(Output::Write)),
            op(2, "a", Input::Read, Outcome::Ok(Output::Read(Some(1)))),
            op(3, "b", Input::Delete, Outcome::Failed),
            op(
                4,
                "b",
                Input::Cas {
                    expected: None,
                    new: 2,
                },
                Outcome::Unknown,
            ),
        ]);
        assert_eq!(history.validate(), Ok(()));
    }

    #[test]
    fn duplicate_id_is_rejected() {
        let ops = vec![
            op(1, "a", Input::Read, Outcome::Ok(Output::Read(None))),
            op(1, "b", Input::Read, Outcome::Ok(Output::Read(None))),
        ];
        assert_eq!(validate(&ops), Err(HistoryError::DuplicateId { id: 1 }));
    }

    #[test]
    fn completion_before_invocation_is_rejected_unless_unknown() {
        let mut bad = op(7, "a", Input::Write(3), Outcome::Ok(Output::Write));
        bad.complete_ns = 5;
        let err = validate(std::slice::from_ref(&bad)).unwrap_err();
        assert_eq!(
            err,
            HistoryError::CompletesBeforeInvoke {
                id: 7,
                invoke_ns: 10,
                complete_ns: 5
            }
        );
        assert!(err.to_string().contains("before its invocation"));
        bad.outcome = Outcome::Unknown;
        assert_eq!(validate(&[bad]), Ok(()));
    }

    #[test]
    fn mismatched_output_is_rejected() {
        let ops = vec![op(3, "a", Input::Read, Outcome::Ok(Output::Write))];
        let err = validate(&ops).unwrap_err();
        assert!(matches!(err, HistoryError::OutputMismatch { id: 3, .. }));
        assert!(err.to_string().contains("op 3"));
    }

    #[test]
    fn by_key_groups_in_key_order() {
        let history = History(vec![
            op(1, "b", Input::Read, Outcome::Ok(Output::Read(None))),
            op(2, "a", Input::Read, Outcome::Ok(Output::Read(None))),
            op(3, "b", Input::Read, Outcome::Ok(Output::Read(None))),
        ]);
        let grouped = history.by_key();
        let keys: Vec<&str> = grouped.keys().copied().collect();
        assert_eq!(keys, vec!["a", "b"]);
        let b_ids: Vec<u64> = grouped["b"].iter().map(|op| op.id).collect();
        assert_eq!(b_ids, vec![1, 3]);
    }

    #[test]
    fn overlap_treats_touching_and_unknown_as_concurrent() {
        let mut first = op(1, "a", Input::Write(1), Outcome::Ok(Output::Write));
        let mut second = op(2, "a", Input::Read, Outcome::Ok(Output::Read(None)));
        first.complete_ns = 20;
        second.invoke_ns = 20;
        second.complete_ns = 30;
        assert!(first.overlaps(&second));
        second.invoke_ns = 21;
        assert!(!first.overlaps(&second));
        first.outcome = Outcome::Unknown;
        assert!(first.overlaps(&second));
        assert!(first.to_string().contains("never completed"));
    }
}
