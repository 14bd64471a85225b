//! The linearizability checker for per-key registers: splits a history by key
//! (P-compositionality), prunes impossible observations, runs the memoized Wing–Gong search
//! from `crate::checker::search` on each key within a wall-clock budget, and turns a failure
//! into a report an operator can read.
//!
//! Outcome rules: `Failed` ops never happened and are removed. `Unknown` ops may take effect at
//! any point after invocation, or never; their outputs constrain nothing, so unknown reads are
//! dropped, and an unknown write, delete or CAS whose resulting value nobody observes is dropped
//! too when no CAS on the key reported "not applied" (placing it could never help then).
//! Written values that no op compares against are merged into one stand-in value.
//! Tie rule: an op completing at `t` does not precede an op invoked at `t`; they are concurrent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::checker::search::{self, Deadline, Failure, OpKind, SearchOp, SearchOutcome};
use crate::history::{self, display_value, Input, Op, Outcome, Output, Value};

/// Limits for one check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Total wall-clock budget for the whole history.
    pub budget: Duration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            budget: Duration::from_secs(60),
        }
    }
}

/// The checker's conclusion.
#[derive(Debug, Clone, serde::Serialize)]
pub enum Verdict {
    Linearizable,
    /// Some key's history has no linearization. `ops` lists the offending operations for an
    /// operator to read: the op that could not be placed, the ops concurrent with it and the op
    /// that set the register's value at that point; `longest_prefix` is the longest
    /// linearizable prefix found, as op ids in order.
    NotLinearizable {
        key: String,
        explanation: String,
        ops: Vec<Op>,
        longest_prefix: Vec<u64>,
    },
    /// The search ran out of budget: never reported as a pass.
    Unknown {
        reason: String,
        keys_checked: usize,
        keys_total: usize,
    },
}

/// The verdict plus what it covered.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub verdict: Verdict,
    /// Ops (excluding `Failed` ones) on the keys that were decided.
    pub ops_checked: usize,
    /// Distinct keys in the history.
    pub keys: usize,
    pub elapsed_ms: u128,
}

/// Checks that every key's register history is linearizable. Keys are checked in sorted
/// order and the first failing key is reported.
pub fn check_registers(history: &[Op], opts: &CheckOptions) -> Report {
    let started = Instant::now();
    let deadline = Deadline::after(opts.budget);
    let by_key = history::ops_by_key(history);
    let keys_total = by_key.len();
    let (verdict, ops_checked) = match history::validate(history) {
        Err(error) => (
            Verdict::Unknown {
                reason: format!("history is malformed: {error}"),
                keys_checked: 0,
                keys_total,
            },
            0,
        ),
        Ok(()) => check_keys(by_key.into_iter(), keys_total, &deadline, opts.budget),
    };
    Report {
        verdict,
        ops_checked,
        keys: keys_total,
        elapsed_ms: started.elapsed().as_millis(),
    }
}

/// Result of checking one key.
enum KeyResult {
    Linearizable,
    Violation(Verdict),
    OutOfBudget,
}

fn check_keys<'a>(
    keys: impl Iterator<Item = (&'a str, Vec<&'a Op>)>,
    keys_total: usize,
    deadline: &Deadline,
    budget: Duration,
) -> (Verdict, usize) {
    let mut ops_checked = 0;
    for (keys_checked, (key, ops)) in keys.enumerate() {
        let live = ops
            .iter()
            .filter(|op| op.outcome != Outcome::Failed)
            .count();
        let result = if deadline.expired() {
            KeyResult::OutOfBudget
        } else {
            check_key(key, &ops, deadline)
        };
        match result {
            KeyResult::Linearizable => ops_checked += live,
            KeyResult::Violation(verdict) => return (verdict, ops_checked + live),
            KeyResult::OutOfBudget => {
                let reason = format!(
                    "search budget of {budget:?} exhausted while checking key {key:?} ({live} ops)"
                );
                let verdict = Verdict::Unknown {
                    reason,
                    keys_checked,
                    keys_total,
                };
                return (verdict, ops_checked);
            }
        }
    }
    (Verdict::Linearizable, ops_checked)
}

fn check_key(key: &str, ops: &[&Op], deadline: &Deadline) -> KeyResult {
    let (mut live, failed): (Vec<&Op>, Vec<&Op>) = ops
        .iter()
        .copied()
        .partition(|op| op.outcome != Outcome::Failed);
    live.sort_by_key(|op| (op.invoke_ns, op.id));
    if let Some(verdict) = find_unwritten_observation(key, &live, &failed) {
        return KeyResult::Violation(verdict);
    }
    let unread = UnreadValues::of(&live);
    let (kept, search_ops): (Vec<&Op>, Vec<SearchOp>) = ops_worth_searching(&live)
        .into_iter()
        .filter_map(|op| Some((op, to_search_op(op, &unread)?)))
        .unzip();
    match search::search(&search_ops, deadline) {
        SearchOutcome::Linearizable => KeyResult::Linearizable,
        SearchOutcome::OutOfBudget => KeyResult::OutOfBudget,
        SearchOutcome::NotLinearizable(failure) => {
            KeyResult::Violation(describe_failure(key, &kept, &failure, &unread))
        }
    }
}

/// Fails fast when an op observed a value that no surviving op on the key could have written.
fn find_unwritten_observation(key: &str, live: &[&Op], failed: &[&Op]) -> Option<Verdict> {
    let written: BTreeSet<u64> = live
        .iter()
        .filter_map(|op| op.possibly_written_value())
        .collect();
    let (culprit, value) = live.iter().find_map(|op| match op.observed_value() {
        Some(Some(value)) if !written.contains(&value) => Some((*op, value)),
        _ => None,
    })?;
    let what = match culprit.input {
        Input::Cas { .. } => "applied cas expecting value",
        _ => "read of value",
    };
    let mut explanation = format!("{what} {value} that no operation wrote: {culprit}");
    let failed_writer = failed
        .iter()
        .find(|op| op.written_value() == Some(Some(value)));
    if let Some(writer) = failed_writer {
        let note = format!("; only {writer} wrote it, and that op failed, so it never happened");
        explanation.push_str(&note);
    }
    Some(Verdict::NotLinearizable {
        key: key.to_string(),
        explanation,
        ops: vec![culprit.clone()],
        longest_prefix: Vec::new(),
    })
}

/// Drops ops whose placement can never matter: unknown reads, and unknown mutations whose
/// resulting value nobody observes (unless some CAS reported "not applied", since such a CAS
/// can depend on the register holding a value nobody reads).
fn ops_worth_searching<'a>(live: &[&'a Op]) -> Vec<&'a Op> {
    let mut observed: BTreeSet<Value> = live.iter().filter_map(|op| op.observed_value()).collect();
    for op in live {
        if let (Input::Cas { expected, .. }, Outcome::Unknown) = (&op.input, &op.outcome) {
            observed.insert(*expected);
        }
    }
    let has_refused_cas = live
        .iter()
        .any(|op| op.outcome == Outcome::Ok(Output::Cas { applied: false }));
    live.iter()
        .copied()
        .filter(|op| match (&op.outcome, op.written_value()) {
            (Outcome::Unknown, None) => false,
            (Outcome::Unknown, Some(result)) => has_refused_cas || observed.contains(&result),
            _ => true,
        })
        .collect()
}

/// Written values that no op on the key ever compares against: no read returned them and no
/// CAS expected them. They are indistinguishable to every op, so the search sees them all as
/// one stand-in value; that merges equivalent states and makes timed-out writes nobody read
/// interchangeable.
struct UnreadValues {
    values: BTreeSet<u64>,
    stand_in: u64,
}

impl UnreadValues {
    fn of(live: &[&Op]) -> Self {
        let mut compared = BTreeSet::new();
        for op in live {
            match (&op.input, &op.outcome) {
                (Input::Read, Outcome::Ok(Output::Read(Some(v)))) => {
                    compared.insert(*v);
                }
                (
                    Input::Cas {
                        expected: Some(v), ..
                    },
                    _,
                ) => {
                    compared.insert(*v);
                }
                _ => {}
            }
        }
        let written: BTreeSet<u64> = live
            .iter()
            .filter_map(|op| op.possibly_written_value())
            .collect();
        let mut stand_in = u64::MAX;
        while compared.contains(&stand_in) || written.contains(&stand_in) {
            stand_in -= 1;
        }
        UnreadValues {
            values: written.difference(&compared).copied().collect(),
            stand_in,
        }
    }

    fn canonical(&self, value: u64) -> u64 {
        if self.values.contains(&value) {
            self.stand_in
        } else {
            value
        }
    }

    fn display(&self, state: Value) -> String {
        match state {
            Some(v) if v == self.stand_in => "a value no read returned".to_string(),
            other => display_value(other),
        }
    }
}

/// The search's view of an op; `None` for a read without a known result (it constrains nothing).
fn to_search_op(op: &Op, unread: &UnreadValues) -> Option<SearchOp> {
    let output = match &op.outcome {
        Outcome::Ok(output) => Some(output),
        Outcome::Failed | Outcome::Unknown => None,
    };
    let kind = match (&op.input, output) {
        (Input::Read, Some(Output::Read(value))) => OpKind::Read(*value),
        (Input::Read, _) => return None,
        (Input::Write(v), _) => OpKind::Set(Some(unread.canonical(*v))),
        (Input::Delete, _) => OpKind::Set(None),
        (Input::Cas { expected, new }, output) => OpKind::Cas {
            expected: *expected,
            new: unread.canonical(*new),
            applied: match output {
                Some(Output::Cas { applied }) => Some(*applied),
                _ => None,
            },
        },
    };
    Some(SearchOp {
        invoke_ns: op.invoke_ns,
        complete_ns: op.known_completion_ns(),
        kind,
    })
}

/// The op in `prefix` that last set the register, if any.
fn last_setter<'a>(kept: &[&'a Op], prefix: &[usize]) -> Option<&'a Op> {
    prefix
        .iter()
        .rev()
        .map(|&index| kept[index])
        .find(|op| match (&op.input, &op.outcome) {
            (Input::Read, _) => false,
            (Input::Cas { .. }, Outcome::Ok(Output::Cas { applied })) => *applied,
            _ => true,
        })
}

/// Why `op` cannot take effect while the register holds `state`.
fn why_unplaceable(op: &Op, held: &str) -> String {
    match (&op.input, &op.outcome) {
        (Input::Read, Outcome::Ok(Output::Read(value))) => format!(
            "it returned {} while the register held {held}",
            display_value(*value)
        ),
        (Input::Cas { expected, .. }, Outcome::Ok(Output::Cas { applied: true })) => format!(
            "it reported applied, but the register held {held}, not the expected {}",
            display_value(*expected)
        ),
        (Input::Cas { .. }, Outcome::Ok(Output::Cas { applied: false })) => {
            format!("it reported not applied, but the register held the expected {held}")
        }
        _ => "every ordering of it and its concurrent ops contradicts a later result".to_string(),
    }
}

fn describe_failure(key: &str, kept: &[&Op], failure: &Failure, unread: &UnreadValues) -> Verdict {
    let prefix = &failure.longest_prefix;
    let longest_prefix: Vec<u64> = prefix.iter().map(|&index| kept[index].id).collect();
    let setter = last_setter(kept, prefix);
    let set_by = setter.map_or("the initial state".to_string(), |op| {
        format!("op {}", op.id)
    });
    let mut explanation = format!(
        "key {key:?} has no linearization. The longest linearizable prefix places {} of {} ops \
         and leaves the register at {} (set by {set_by}).",
        prefix.len(),
        kept.len(),
        unread.display(failure.state),
    );
    let mut offending: Vec<&Op> = setter.into_iter().collect();
    if let Some(blocked) = failure.blocked.map(|index| kept[index]) {
        let concurrent: Vec<&Op> = kept
            .iter()
            .copied()
            .filter(|op| op.id != blocked.id && op.overlaps(blocked))
            .collect();
        explanation.push_str(&format!(
            " Next, {blocked} had to take effect before it completed, but {}.",
            why_unplaceable(blocked, &unread.display(failure.state)),
        ));
        if !concurrent.is_empty() {
            let ids: Vec<String> = concurrent.iter().map(|op| op.id.to_string()).collect();
            explanation.push_str(&format!(
                " Ops concurrent with it: {}; every order of them was tried.",
                ids.join(", ")
            ));
        }
        offending.push(blocked);
        offending.extend(concurrent);
    }
    offending.sort_by_key(|op| (op.invoke_ns, op.id));
    offending.dedup_by_key(|op| op.id);
    Verdict::NotLinearizable {
        key: key.to_string(),
        explanation,
        ops: offending.into_iter().cloned().collect(),
        longest_prefix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::testing::{
        brute_force_linearizable, random_small_history, random_valid_history,
    };
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const KEY: &str = "k";

    /// A successful op on `KEY` over the interval `span`.
    fn ok(id: u64, process: u64, span: (u64, u64), input: Input, output: Output) -> Op {
        let (invoke_ns, complete_ns) = span;
        let outcome = Outcome::Ok(output);
        let key = KEY.to_string();
        Op {
            id,
            process,
            key,
            invoke_ns,
            complete_ns,
            input,
            outcome,
        }
    }

    fn write(id: u64, process: u64, span: (u64, u64), value: u64) -> Op {
        ok(id, process, span, Input::Write(value), Output::Write)
    }

    fn read(id: u64, process: u64, span: (u64, u64), value: Value) -> Op {
        ok(id, process, span, Input::Read, Output::Read(value))
    }

    fn delete(id: u64, process: u64, span: (u64, u64)) -> Op {
        ok(id, process, span, Input::Delete, Output::Delete)
    }

    fn cas(id: u64, process: u64, span: (u64, u64), cas: (Value, u64), applied: bool) -> Op {
        let (expected, new) = cas;
        ok(
            id,
            process,
            span,
            Input::Cas { expected, new },
            Output::Cas { applied },
        )
    }

    fn with_outcome(mut op: Op, outcome: Outcome) -> Op {
        op.outcome = outcome;
        op
    }

    fn on_key(mut op: Op, key: &str) -> Op {
        op.key = key.to_string();
        op
    }

    fn check(history: &[Op]) -> Report {
        let opts = CheckOptions {
            budget: Duration::from_secs(30),
        };
        check_registers(history, &opts)
    }

    fn assert_linearizable(history: &[Op]) {
        let report = check(history);
        assert!(
            matches!(report.verdict, Verdict::Linearizable),
            "expected linearizable, got {:#?}",
            report.verdict
        );
    }

    /// Asserts a violation on `key` whose `ops` include every id in `offending`; returns the
    /// explanation.
    fn assert_violation(history: &[Op], key: &str, offending: &[u64]) -> String {
        let report = check(history);
        let Verdict::NotLinearizable {
            key: bad_key,
            explanation,
            ops,
            ..
        } = report.verdict
        else {
            panic!("expected a violation, got {:#?}", report.verdict);
        };
        assert_eq!(bad_key, key, "{explanation}");
        let ids: Vec<u64> = ops.iter().map(|op| op.id).collect();
        for id in offending {
            assert!(
                ids.contains(id),
                "op {id} missing from {ids:?}: {explanation}"
            );
        }
        explanation
    }

    #[test]
    fn sequential_history_is_linearizable() {
        assert_linearizable(&[
            read(1, 1, (0, 10), None),
            write(2, 1, (20, 30), 1),
            read(3, 2, (40, 50), Some(1)),
            write(4, 2, (60, 70), 2),
            read(5, 1, (80, 90), Some(2)),
        ]);
    }

    #[test]
    fn overlapping_read_sees_old_or_new_value() {
        for seen in [None, Some(1)] {
            assert_linearizable(&[write(1, 1, (0, 100), 1), read(2, 2, (50, 150), seen)]);
        }
        // A read that starts after the write completed must see it.
        let stale = [write(1, 1, (0, 100), 1), read(2, 2, (101, 150), None)];
        assert_violation(&stale, KEY, &[2]);
    }

    #[test]
    fn concurrent_writes_with_reads_agreeing_on_one_order() {
        assert_linearizable(&[
            write(1, 1, (0, 100), 1),
            write(2, 2, (0, 100), 2),
            read(3, 3, (50, 60), Some(2)),
            read(4, 4, (70, 150), Some(1)),
            read(5, 3, (160, 170), Some(1)),
            read(6, 4, (160, 170), Some(1)),
        ]);
    }

    #[test]
    fn consistent_cas_results_are_linearizable() {
        assert_linearizable(&[
            write(1, 1, (0, 10), 1),
            cas(2, 1, (20, 30), (Some(1), 2), true),
            cas(3, 2, (40, 50), (Some(1), 3), false),
            cas(4, 2, (60, 70), (None, 4), false),
            read(5, 1, (80, 90), Some(2)),
            // Concurrent CASes from the same expected value: exactly one may win.
            cas(6, 1, (100, 200), (Some(2), 6), true),
            cas(7, 2, (100, 200), (Some(2), 7), false),
            read(8, 3, (210, 220), Some(6)),
        ]);
    }

    #[test]
    fn deletes_make_the_key_absent() {
        assert_linearizable(&[
            write(1, 1, (0, 10), 1),
            delete(2, 1, (20, 30)),
            read(3, 2, (40, 50), None),
            cas(4, 2, (60, 70), (None, 5), true),
            read(5, 1, (80, 90), Some(5)),
        ]);
        let resurrected = [
            write(1, 1, (0, 10), 1),
            delete(2, 1, (20, 30)),
            read(3, 2, (40, 50), Some(1)),
        ];
        assert_violation(&resurrected, KEY, &[2, 3]);
    }

    #[test]
    fn stale_read_after_completed_write_is_a_violation() {
        let history = [write(1, 1, (0, 10), 1), read(2, 2, (20, 30), None)];
        let explanation = assert_violation(&history, KEY, &[1, 2]);
        assert!(explanation.contains("returned absent"), "{explanation}");
        let report = check(&history);
        let Verdict::NotLinearizable { longest_prefix, .. } = report.verdict else {
            panic!("expected a violation");
        };
        assert_eq!(longest_prefix, vec![1]);
    }

    #[test]
    fn reads_observing_writes_in_opposite_orders_is_a_violation() {
        let history = [
            write(1, 1, (0, 100), 1),
            write(2, 2, (0, 100), 2),
            read(3, 3, (110, 120), Some(1)),
            read(4, 3, (130, 140), Some(2)),
            read(5, 4, (110, 120), Some(2)),
            read(6, 4, (130, 140), Some(1)),
        ];
        assert_violation(&history, KEY, &[3, 5]);
    }

    #[test]
    fn cas_applied_against_a_different_value_is_a_violation() {
        let history = [
            write(1, 1, (0, 10), 1),
            write(2, 1, (20, 30), 2),
            cas(3, 2, (40, 50), (Some(1), 3), true),
        ];
        let explanation = assert_violation(&history, KEY, &[2, 3]);
        assert!(explanation.contains("reported applied"), "{explanation}");
        let refused = [
            write(1, 1, (0, 10), 1),
            cas(2, 2, (20, 30), (Some(1), 3), false),
        ];
        assert_violation(&refused, KEY, &[2]);
    }

    #[test]
    fn read_of_never_written_value_is_pruned() {
        let history = [
            write(1, 1, (0, 10), 1),
            read(2, 2, (0, 50), Some(42)),
            on_key(write(3, 3, (0, 10), 42), "other"),
        ];
        let explanation = assert_violation(&history, KEY, &[2]);
        assert!(
            explanation.contains("read of value 42 that no operation wrote"),
            "{explanation}"
        );
    }

    #[test]
    fn unknown_write_may_take_effect_late_or_never() {
        let timed_out = with_outcome(write(1, 1, (0, 10), 1), Outcome::Unknown);
        let observed_late = [
            timed_out.clone(),
            read(2, 2, (20, 30), None),
            read(3, 2, (1000, 1010), Some(1)),
        ];
        assert_linearizable(&observed_late);
        let never_observed = [timed_out.clone(), read(2, 2, (20, 30), None)];
        assert_linearizable(&never_observed);
        let flickers = [
            timed_out,
            read(2, 2, (20, 30), Some(1)),
            read(3, 2, (40, 50), None),
        ];
        assert_violation(&flickers, KEY, &[1, 3]);
    }

    #[test]
    fn unknown_read_and_unknown_cas_constrain_nothing_about_outputs() {
        assert_linearizable(&[
            write(1, 1, (0, 10), 1),
            with_outcome(read(2, 2, (20, 30), Some(77)), Outcome::Unknown),
            with_outcome(cas(3, 3, (20, 30), (Some(1), 2), false), Outcome::Unknown),
            read(4, 1, (40, 50), Some(2)),
        ]);
        // An unknown CAS cannot apply when its expected value is not current.
        let impossible = [
            write(1, 1, (0, 10), 1),
            with_outcome(cas(2, 2, (20, 30), (Some(9), 2), true), Outcome::Unknown),
            write(3, 3, (5, 15), 9),
            read(4, 1, (40, 50), Some(2)),
            read(5, 1, (60, 70), Some(1)),
        ];
        assert_violation(&impossible, KEY, &[5]);
    }

    #[test]
    fn unobserved_unknown_write_still_explains_a_refused_cas() {
        // Only the timed-out write can make the CAS's expected value 1 not current.
        assert_linearizable(&[
            write(1, 1, (0, 10), 1),
            with_outcome(write(2, 2, (20, 30), 2), Outcome::Unknown),
            cas(3, 1, (40, 50), (Some(1), 3), false),
        ]);
    }

    #[test]
    fn failed_write_observed_by_a_read_is_a_violation() {
        let history = [
            with_outcome(write(1, 1, (0, 10), 1), Outcome::Failed),
            read(2, 2, (20, 30), Some(1)),
        ];
        let explanation = assert_violation(&history, KEY, &[2]);
        assert!(explanation.contains("failed"), "{explanation}");
    }

    #[test]
    fn first_failing_key_in_sorted_order_is_reported() {
        let history = [
            on_key(read(1, 1, (0, 10), Some(5)), "d"),
            on_key(write(2, 1, (20, 30), 1), "a"),
            on_key(read(3, 1, (40, 50), Some(1)), "a"),
            on_key(write(4, 2, (0, 10), 1), "b"),
            on_key(read(5, 2, (20, 30), None), "b"),
        ];
        let report = check(&history);
        assert_eq!(report.keys, 3);
        assert_eq!(report.ops_checked, 4, "keys a and b decided, d not reached");
        assert!(matches!(report.verdict, Verdict::NotLinearizable { ref key, .. } if key == "b"));
    }

    #[test]
    fn malformed_history_is_never_a_pass() {
        let history = [read(1, 1, (0, 10), None), read(1, 2, (0, 10), None)];
        let report = check(&history);
        let Verdict::Unknown { reason, .. } = report.verdict else {
            panic!("expected unknown, got {:#?}", report.verdict);
        };
        assert!(reason.contains("malformed"), "{reason}");
    }

    #[test]
    fn exhausted_budget_reports_unknown() {
        let mut history: Vec<Op> = (1..=44).map(|v| write(v, v, (0, 1000), v)).collect();
        history.push(read(100, 100, (2000, 2100), Some(1)));
        history.push(read(101, 100, (2200, 2300), Some(2)));
        history.push(on_key(read(102, 101, (0, 10), None), "z"));
        let opts = CheckOptions {
            budget: Duration::from_millis(50),
        };
        let started = Instant::now();
        let report = check_registers(&history, &opts);
        let elapsed = started.elapsed();
        let Verdict::Unknown {
            reason,
            keys_checked,
            keys_total,
        } = report.verdict
        else {
            panic!("expected unknown, got {:#?}", report.verdict);
        };
        assert!(reason.contains("budget"), "{reason}");
        assert_eq!((keys_checked, keys_total), (0, 2));
        assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    }

    /// Rewrites one read to return a different value written on its key; retries other reads
    /// until the result is not linearizable. Returns the mutated history and the read's id.
    fn mutate_until_violation(rng: &mut StdRng, history: &[Op]) -> Option<(Vec<Op>, u64, Report)> {
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].outcome, Outcome::Ok(Output::Read(_))))
            .collect();
        for _ in 0..50 {
            let target = reads[rng.random_range(0..reads.len())];
            let key = &history[target].key;
            let candidates: Vec<u64> = history
                .iter()
                .filter(|op| &op.key == key && op.outcome != Outcome::Failed)
                .filter_map(Op::possibly_written_value)
                .filter(|v| history[target].outcome != Outcome::Ok(Output::Read(Some(*v))))
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let mut mutated = history.to_vec();
            let value = candidates[rng.random_range(0..candidates.len())];
            mutated[target].outcome = Outcome::Ok(Output::Read(Some(value)));
            let report = check(&mutated);
            match report.verdict {
                Verdict::Linearizable => continue,
                Verdict::NotLinearizable { .. } => {
                    let id = mutated[target].id;
                    return Some((mutated, id, report));
                }
                Verdict::Unknown { reason, .. } => panic!("mutated history undecided: {reason}"),
            }
        }
        None
    }

    fn scale_run(seed: u64, keys: usize, ops_per_key: usize) {
        let mut rng = StdRng::seed_from_u64(seed);
        let history = random_valid_history(&mut rng, keys, ops_per_key, 8);
        let started = Instant::now();
        let report = check(&history);
        println!(
            "scale {keys} keys x {ops_per_key} ops: {:?} for {} ops ({} ms reported)",
            started.elapsed(),
            report.ops_checked,
            report.elapsed_ms
        );
        assert!(
            matches!(report.verdict, Verdict::Linearizable),
            "{:#?}",
            report.verdict
        );
        let (mutated, read_id, report) =
            mutate_until_violation(&mut rng, &history).expect("some mutation is detectable");
        let Verdict::NotLinearizable { key, ops, .. } = report.verdict else {
            panic!("expected a violation, got {:#?}", report.verdict);
        };
        let read = &mutated[read_id as usize];
        assert_eq!(key, read.key);
        assert!(ops.iter().any(|op| op.id == read_id || op.overlaps(read)));
        println!(
            "mutated read {read_id} detected in {} ms",
            report.elapsed_ms
        );
    }

    #[test]
    fn random_valid_history_at_scale_passes_and_a_mutation_fails() {
        scale_run(7, 10, 1000);
    }

    #[test]
    fn random_high_contention_history_passes_and_a_mutation_fails() {
        scale_run(11, 1, 2000);
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut verdicts = [0usize; 2];
        for _ in 0..100_000 {
            let history = random_small_history(&mut rng);
            let live: Vec<&Op> = history
                .iter()
                .filter(|op| op.outcome != Outcome::Failed)
                .collect();
            let expected = brute_force_linearizable(&live);
            let verdict = check(&history).verdict;
            let actual = match verdict {
                Verdict::Linearizable => true,
                Verdict::NotLinearizable { .. } => false,
                Verdict::Unknown { .. } => panic!("unknown on {history:#?}"),
            };
            assert_eq!(actual, expected, "{history:#?}");
            verdicts[usize::from(actual)] += 1;
        }
        assert!(verdicts[0] > 1000 && verdicts[1] > 1000, "{verdicts:?}");
    }
}
