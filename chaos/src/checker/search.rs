//! The linearization search for a single register: the event list, a growable bitset, and
//! the Wing–Gong depth-first search with Lowe's memoization of (linearized set, state) pairs,
//! extended with dominance over optional (unknown-outcome) ops.
//!
//! Events are sorted by time. On equal timestamps invocations come before completions, so an
//! op completing at `t` does not precede an op invoked at `t`: the two are treated as
//! concurrent (the permissive choice). An op with an unknown outcome completes at +infinity
//! and need not be linearized at all.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Instant;

use crate::history::Value;

/// How often (in search steps) the wall clock is consulted.
const STEPS_PER_CLOCK_CHECK: u64 = 256;

/// What one op does to the register, as the search sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A read that returned this value.
    Read(Value),
    /// A write (`Some`) or delete (`None`).
    Set(Value),
    /// A compare-and-set; `applied` is `None` when the outcome is unknown.
    Cas {
        expected: Value,
        new: u64,
        applied: Option<bool>,
    },
}

/// One op of a single key's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchOp {
    pub invoke_ns: u64,
    /// `None` when the outcome is unknown: the op may take effect at any later time, or never.
    pub complete_ns: Option<u64>,
    pub kind: OpKind,
}

impl SearchOp {
    fn is_known(&self) -> bool {
        self.complete_ns.is_some()
    }

    /// The register state after linearizing this op in `state`, or `None` when the op cannot
    /// be linearized there. An unknown op that would not change the state is never worth
    /// linearizing (it constrains nothing), so it is refused too.
    fn apply(&self, state: Value) -> Option<Value> {
        let known = self.is_known();
        let next = match self.kind {
            OpKind::Read(seen) => (seen == state).then_some(state),
            OpKind::Set(value) => Some(value),
            OpKind::Cas {
                expected,
                new,
                applied,
            } => {
                let matches = state == expected;
                match applied {
                    Some(applied) if applied != matches => None,
                    _ if matches => Some(Some(new)),
                    _ => Some(state),
                }
            }
        };
        next.filter(|next| known || *next != state)
    }

    /// True when this op inspects the register and can be linearized in state `after` but
    /// not in state `before`.
    fn enabled_by(&self, before: Value, after: Value) -> bool {
        !matches!(self.kind, OpKind::Set(_))
            && self.apply(before).is_none()
            && self.apply(after).is_some()
    }
}

/// A wall-clock deadline shared by all keys of one check.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Option<Instant>,
}

impl Deadline {
    /// A deadline `budget` from now; a budget too large to represent never expires.
    pub fn after(budget: std::time::Duration) -> Self {
        Deadline {
            at: Instant::now().checked_add(budget),
        }
    }

    pub fn expired(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }
}

/// The deepest configuration the search reached before giving up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Indices into the searched ops, in linearization order.
    pub longest_prefix: Vec<usize>,
    /// Register state after that prefix.
    pub state: Value,
    /// The earliest-completing op still pending there: it had to be placed next and could not be.
    pub blocked: Option<usize>,
}

/// Result of searching one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchOutcome {
    Linearizable,
    NotLinearizable(Failure),
    OutOfBudget,
}

/// A growable set of small integers, hashable so it can key the memo table. Equality and
/// hashing ignore trailing zero words, so sets compare by content whatever their capacity.
#[derive(Debug, Clone, Default)]
pub struct BitSet {
    words: Vec<u64>,
}

impl PartialEq for BitSet {
    fn eq(&self, other: &Self) -> bool {
        self.significant_words() == other.significant_words()
    }
}

impl Eq for BitSet {}

impl Hash for BitSet {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.significant_words().hash(state);
    }
}

impl BitSet {
    fn significant_words(&self) -> &[u64] {
        let used = self
            .words
            .iter()
            .rposition(|word| *word != 0)
            .map_or(0, |last| last + 1);
        &self.words[..used]
    }

    pub fn with_capacity(bits: usize) -> Self {
        BitSet {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    pub fn insert(&mut self, bit: usize) {
        let word = bit / 64;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (bit % 64);
    }

    pub fn remove(&mut self, bit: usize) {
        if let Some(word) = self.words.get_mut(bit / 64) {
            *word &= !(1 << (bit % 64));
        }
    }

    pub fn contains(&self, bit: usize) -> bool {
        self.words
            .get(bit / 64)
            .is_some_and(|word| word & (1 << (bit % 64)) != 0)
    }

    /// A copy without trailing zero words, for long-lived storage.
    pub fn clone_trimmed(&self) -> BitSet {
        BitSet {
            words: self.significant_words().to_vec(),
        }
    }

    /// True when every element of `self` is in `other`.
    pub fn is_subset_of(&self, other: &BitSet) -> bool {
        self.words.iter().enumerate().all(|(index, word)| {
            let theirs = other.words.get(index).copied().unwrap_or(0);
            word & !theirs == 0
        })
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The time-ordered invocation/completion events as a doubly linked list over a fixed
/// array, so an op's two events can be unlinked and relinked in LIFO order (dancing links).
/// Slot 0 is the head sentinel; slots `1..` hold events.
struct EventList {
    /// For each slot: the op it belongs to and whether it is the invocation.
    events: Vec<(usize, bool)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each op: its (invocation slot, completion slot).
    slots: Vec<(usize, usize)>,
}

impl EventList {
    fn new(ops: &[SearchOp]) -> Self {
        // (time, completion?, op): invocations sort before completions at equal times.
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (index, op) in ops.iter().enumerate() {
            order.push((op.invoke_ns, false, index));
            order.push((op.complete_ns.unwrap_or(u64::MAX), true, index));
        }
        order.sort_unstable();
        let slots_total = order.len() + 1;
        let mut list = EventList {
            events: Vec::with_capacity(slots_total),
            next: (1..=slots_total).collect(),
            prev: (0..slots_total).map(|s| s.wrapping_sub(1)).collect(),
            slots: vec![(NIL, NIL); ops.len()],
        };
        list.events.push((NIL, false));
        for (slot, (_, is_completion, op)) in order.into_iter().enumerate() {
            list.events.push((op, !is_completion));
            if is_completion {
                list.slots[op].1 = slot + 1;
            } else {
                list.slots[op].0 = slot + 1;
            }
        }
        list.next[slots_total - 1] = NIL;
        list.prev[HEAD] = NIL;
        list
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    fn unlink_slot(&mut self, slot: usize) {
        let (prev, next) = (self.prev[slot], self.next[slot]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink_slot(&mut self, slot: usize) {
        let (prev, next) = (self.prev[slot], self.next[slot]);
        self.next[prev] = slot;
        if next != NIL {
            self.prev[next] = slot;
        }
    }

    /// Removes both events of `op` from the list.
    fn lift(&mut self, op: usize) {
        let (call, ret) = self.slots[op];
        self.unlink_slot(call);
        self.unlink_slot(ret);
    }

    /// Undoes the most recent `lift`, which must have been of `op`.
    fn unlift(&mut self, op: usize) {
        let (call, ret) = self.slots[op];
        self.relink_slot(ret);
        self.relink_slot(call);
    }

    /// The op whose completion is the earliest still in the list.
    fn first_pending_completion(&self) -> Option<usize> {
        let mut slot = self.first();
        while slot != NIL {
            let (op, is_call) = self.events[slot];
            if !is_call {
                return Some(op);
            }
            slot = self.next[slot];
        }
        None
    }
}

/// One linearized op on the search stack, with the state to restore when it is undone.
struct Frame {
    op: usize,
    state_before: Value,
}

/// Which minimal ops are being tried: at every configuration the ops with a known completion
/// are tried before the optional (unknown-outcome) ones, so that configurations using fewer
/// optional ops are explored first and dominate the rest in the memo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Required,
    Optional,
}

/// Where the scan for the next candidate resumes.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    slot: usize,
    phase: Phase,
}

/// Mutable search state for one key.
///
/// The memo maps (required ops linearized, state) to the sets of optional ops linearized
/// alongside that were already explored. A configuration is skipped when an explored one has
/// the same required set and state and a subset of its optional ops: optional ops constrain
/// nothing, so the explored configuration could do everything this one can.
struct Search<'a> {
    ops: &'a [SearchOp],
    list: EventList,
    required_done: BitSet,
    optional_done: BitSet,
    /// Hash of `required_done` (XOR of `zobrist(op)` over its members), kept incrementally.
    required_key: u64,
    memo: HashMap<(u64, Value), Vec<Explored>>,
    stack: Vec<Frame>,
    state: Value,
    known_total: usize,
    known_done: usize,
    /// Required ops in `best.longest_prefix`.
    best_known_done: usize,
    best: Failure,
    /// For each optional op, the previous optional op in list order with the same kind.
    earlier_twin: Vec<Option<usize>>,
    /// Cache for `enables_another`, valid while `blocked_for == Some(generation)`.
    blocked: Vec<usize>,
    blocked_for: Option<u64>,
    /// Bumped whenever the configuration changes.
    generation: u64,
}

/// Memo entry: a set of required ops and, for one state, the minimal sets of optional ops
/// explored alongside it.
struct Explored {
    required: BitSet,
    optional_sets: Vec<BitSet>,
}

/// A well-mixed 64-bit code for `op` (SplitMix64), XORed together to hash a set of ops.
fn zobrist(op: usize) -> u64 {
    let mut z = (op as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// For each optional op, the nearest optional op with the same kind invoked before it.
fn earlier_twins(ops: &[SearchOp], list: &EventList) -> Vec<Option<usize>> {
    let mut latest: HashMap<OpKind, usize> = HashMap::new();
    let mut twins = vec![None; ops.len()];
    for &(op, is_call) in &list.events[1..] {
        if is_call && !ops[op].is_known() {
            twins[op] = latest.insert(ops[op].kind, op);
        }
    }
    twins
}

impl<'a> Search<'a> {
    fn new(ops: &'a [SearchOp]) -> Self {
        let list = EventList::new(ops);
        let earlier_twin = earlier_twins(ops, &list);
        let best = Failure {
            longest_prefix: Vec::new(),
            state: None,
            blocked: list.first_pending_completion(),
        };
        Search {
            ops,
            list,
            required_done: BitSet::with_capacity(ops.len()),
            optional_done: BitSet::with_capacity(ops.len()),
            required_key: 0,
            memo: HashMap::new(),
            stack: Vec::new(),
            state: None,
            known_total: ops.iter().filter(|op| op.is_known()).count(),
            known_done: 0,
            best_known_done: 0,
            best,
            earlier_twin,
            blocked: Vec::new(),
            blocked_for: None,
            generation: 0,
        }
    }

    fn phase_of(&self, op: usize) -> Phase {
        if self.ops[op].is_known() {
            Phase::Required
        } else {
            Phase::Optional
        }
    }

    /// Marks `op` as linearized or not, keeping `required_key` in step.
    fn mark_done(&mut self, op: usize, done: bool) {
        let set = match self.phase_of(op) {
            Phase::Required => {
                self.required_key ^= zobrist(op);
                &mut self.required_done
            }
            Phase::Optional => &mut self.optional_done,
        };
        if done {
            set.insert(op);
        } else {
            set.remove(op);
        }
    }

    /// Records the current configuration with `state`; false when it is dominated by one
    /// already explored.
    fn remember(&mut self, state: Value) -> bool {
        let bucket = self.memo.entry((self.required_key, state)).or_default();
        let index = match bucket.iter().position(|e| e.required == self.required_done) {
            Some(index) => index,
            None => {
                bucket.push(Explored {
                    required: self.required_done.clone_trimmed(),
                    optional_sets: Vec::new(),
                });
                bucket.len() - 1
            }
        };
        let explored = &mut bucket[index].optional_sets;
        if explored
            .iter()
            .any(|seen| seen.is_subset_of(&self.optional_done))
        {
            return false;
        }
        explored.retain(|seen| !self.optional_done.is_subset_of(seen));
        explored.push(self.optional_done.clone_trimmed());
        true
    }

    /// True when some other minimal op inspects the register and could be linearized right
    /// after `op` moves the state to `next_state`, but not before.
    ///
    /// Optional ops are only tried when this holds. Any linearization can be normalized so
    /// that it does: an optional op followed by a write or delete (or by nothing) can be
    /// dropped, and one followed by an op that works with or without it can be moved later.
    fn enables_another(&mut self, op: usize, next_state: Value) -> bool {
        let state = self.state;
        let ops = self.ops;
        self.blocked_ops()
            .iter()
            .any(|&other| other != op && ops[other].enabled_by(state, next_state))
    }

    /// The minimal ops that inspect the register and cannot be linearized in the current
    /// state: the only ops an optional op could enable. Cached per configuration.
    fn blocked_ops(&mut self) -> &[usize] {
        if self.blocked_for != Some(self.generation) {
            self.collect_blocked();
        }
        &self.blocked
    }

    fn collect_blocked(&mut self) {
        self.blocked.clear();
        let mut slot = self.list.first();
        while slot != NIL {
            let (op, is_call) = self.list.events[slot];
            if !is_call {
                break;
            }
            let inspects = !matches!(self.ops[op].kind, OpKind::Set(_));
            if inspects && self.ops[op].apply(self.state).is_none() {
                self.blocked.push(op);
            }
            slot = self.list.next[slot];
        }
        self.blocked_for = Some(self.generation);
    }

    /// True when an optional op with the same effect as optional `op` comes earlier in the
    /// list and is still pending. Both were invoked already, so they are interchangeable and
    /// only the first needs trying; twins are therefore always used in list order, and it is
    /// enough to look at the nearest earlier one.
    fn has_earlier_twin(&self, op: usize) -> bool {
        self.earlier_twin[op].is_some_and(|twin| !self.optional_done.contains(twin))
    }

    /// Linearizes `op` next if that yields a configuration not dominated by an explored one.
    fn try_linearize(&mut self, op: usize) -> bool {
        let Some(next_state) = self.ops[op].apply(self.state) else {
            return false;
        };
        if !self.ops[op].is_known() && !self.enables_another(op, next_state) {
            return false;
        }
        self.mark_done(op, true);
        if !self.remember(next_state) {
            self.mark_done(op, false);
            return false;
        }
        self.stack.push(Frame {
            op,
            state_before: self.state,
        });
        self.state = next_state;
        self.generation += 1;
        self.list.lift(op);
        if self.ops[op].is_known() {
            self.known_done += 1;
            if self.known_done > self.best_known_done {
                self.record_best();
            }
        }
        true
    }

    fn record_best(&mut self) {
        self.best_known_done = self.known_done;
        self.best = Failure {
            longest_prefix: self.stack.iter().map(|frame| frame.op).collect(),
            state: self.state,
            blocked: self.list.first_pending_completion(),
        };
    }

    /// Undoes the last linearized op; returns it, or `None` when the stack is empty.
    fn undo_last(&mut self) -> Option<usize> {
        let frame = self.stack.pop()?;
        self.state = frame.state_before;
        self.generation += 1;
        self.mark_done(frame.op, false);
        self.list.unlift(frame.op);
        if self.ops[frame.op].is_known() {
            self.known_done -= 1;
        }
        Some(frame.op)
    }

    /// The next minimal op to try at or after `cursor`, with its position; required ops
    /// first, then optional ones. Only invocations before the first pending completion count.
    /// Optional ops that are later twins are skipped here, and the optional phase is
    /// skipped altogether when no minimal op is waiting for a different state.
    fn next_candidate(&mut self, mut cursor: Cursor) -> Option<(usize, Cursor)> {
        loop {
            let event = (cursor.slot != NIL).then(|| self.list.events[cursor.slot]);
            match event {
                Some((op, true))
                    if self.phase_of(op) == cursor.phase
                        && (cursor.phase == Phase::Required || !self.has_earlier_twin(op)) =>
                {
                    return Some((op, cursor));
                }
                Some((_, true)) => cursor.slot = self.list.next[cursor.slot],
                _ if cursor.phase == Phase::Required => {
                    if self.blocked_ops().is_empty() {
                        return None;
                    }
                    cursor = Cursor {
                        slot: self.list.first(),
                        phase: Phase::Optional,
                    };
                }
                _ => return None,
            }
        }
    }

    fn run(&mut self, deadline: &Deadline) -> SearchOutcome {
        let restart = |list: &EventList| Cursor {
            slot: list.first(),
            phase: Phase::Required,
        };
        let mut cursor = restart(&self.list);
        let mut steps: u64 = 0;
        loop {
            if self.known_done == self.known_total {
                return SearchOutcome::Linearizable;
            }
            steps += 1;
            if steps.is_multiple_of(STEPS_PER_CLOCK_CHECK) && deadline.expired() {
                return SearchOutcome::OutOfBudget;
            }
            match self.next_candidate(cursor) {
                Some((op, _)) if self.try_linearize(op) => cursor = restart(&self.list),
                Some((_, at)) => {
                    cursor = Cursor {
                        slot: self.list.next[at.slot],
                        phase: at.phase,
                    }
                }
                None => match self.undo_last() {
                    // Try the candidates after the one just undone in the same configuration.
                    Some(op) => {
                        cursor = Cursor {
                            slot: self.list.next[self.list.slots[op].0],
                            phase: self.phase_of(op),
                        }
                    }
                    None => return SearchOutcome::NotLinearizable(self.best.clone()),
                },
            }
        }
    }
}

/// Decides whether one register's history has a linearization. Every op with a known
/// completion must be linearized inside its interval; ops with unknown completion may be
/// linearized at any point after their invocation, or left out.
pub fn search(ops: &[SearchOp], deadline: &Deadline) -> SearchOutcome {
    Search::new(ops).run(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn known(invoke_ns: u64, complete_ns: u64, kind: OpKind) -> SearchOp {
        SearchOp {
            invoke_ns,
            complete_ns: Some(complete_ns),
            kind,
        }
    }

    fn forever() -> Deadline {
        Deadline::after(Duration::from_secs(3600))
    }

    #[test]
    fn bitset_grows_and_compares_by_content() {
        let mut bits = BitSet::with_capacity(3);
        assert!(bits.is_empty());
        bits.insert(2);
        bits.insert(130);
        assert!(bits.contains(130) && bits.contains(2) && !bits.contains(3));
        assert_eq!(bits.len(), 2);
        bits.remove(130);
        bits.remove(5000);
        let mut other = BitSet::with_capacity(3);
        other.insert(2);
        assert_eq!(bits, other, "trailing zero words must not matter");
        let hash = |set: &BitSet| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            set.hash(&mut hasher);
            hasher.finish()
        };
        assert_eq!(hash(&bits), hash(&other));
        other.insert(64);
        assert_ne!(bits, other);
        assert!(bits.is_subset_of(&other) && !other.is_subset_of(&bits));
        assert!(BitSet::default().is_subset_of(&bits));
        let trimmed = bits.clone_trimmed();
        assert_eq!(trimmed, bits);
        assert_eq!(trimmed.words.len(), 1);
    }

    #[test]
    fn event_list_lift_and_unlift_restore_order() {
        let ops = [
            known(0, 10, OpKind::Set(Some(1))),
            known(5, 10, OpKind::Read(Some(1))),
        ];
        let mut list = EventList::new(&ops);
        let walk = |list: &EventList| {
            let mut out = Vec::new();
            let mut slot = list.first();
            while slot != NIL {
                out.push(list.events[slot]);
                slot = list.next[slot];
            }
            out
        };
        let before = walk(&list);
        assert_eq!(before, vec![(0, true), (1, true), (0, false), (1, false)]);
        list.lift(0);
        assert_eq!(walk(&list), vec![(1, true), (1, false)]);
        list.unlift(0);
        assert_eq!(walk(&list), before);
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        // The read completes at 10, the write is invoked at 10: the read may follow the write.
        let ops = [
            known(0, 10, OpKind::Read(Some(1))),
            known(10, 20, OpKind::Set(Some(1))),
        ];
        assert_eq!(search(&ops, &forever()), SearchOutcome::Linearizable);
        let ops = [
            known(0, 9, OpKind::Read(Some(1))),
            known(10, 20, OpKind::Set(Some(1))),
        ];
        assert!(matches!(
            search(&ops, &forever()),
            SearchOutcome::NotLinearizable(_)
        ));
    }

    #[test]
    fn unknown_cas_applies_only_on_match() {
        let cas = |expected| SearchOp {
            invoke_ns: 0,
            complete_ns: None,
            kind: OpKind::Cas {
                expected,
                new: 9,
                applied: None,
            },
        };
        assert_eq!(cas(None).apply(None), Some(Some(9)));
        assert_eq!(cas(Some(1)).apply(None), None);
        let failed_cas = known(
            0,
            1,
            OpKind::Cas {
                expected: Some(1),
                new: 9,
                applied: Some(false),
            },
        );
        assert_eq!(failed_cas.apply(None), Some(None));
        assert_eq!(failed_cas.apply(Some(1)), None);
    }

    #[test]
    fn expired_deadline_stops_search() {
        let mut ops: Vec<SearchOp> = (1..=30)
            .map(|v| known(0, 100, OpKind::Set(Some(v))))
            .collect();
        ops.push(known(200, 300, OpKind::Read(Some(1))));
        ops.push(known(400, 500, OpKind::Read(Some(2))));
        let deadline = Deadline::after(Duration::ZERO);
        assert_eq!(search(&ops, &deadline), SearchOutcome::OutOfBudget);
    }
}
