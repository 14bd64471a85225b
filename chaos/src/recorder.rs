//! The operation recorder shared by every workload: a monotonic clock starting at the
//! run, unique operation ids, and the history of every operation with its invocation,
//! completion and outcome (ok, failed, unknown).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use reprise_api::ClientError;
use serde::Serialize;

use crate::history::{Input, Op, Outcome, Output};

/// Operations by outcome.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct OpCounts {
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
}

/// Records operations of all workloads of one run.
pub struct Recorder {
    start: Instant,
    next_id: AtomicU64,
    ops: Mutex<Vec<Op>>,
    stamps: Mutex<Vec<(u64, u64)>>,
    ok: AtomicU64,
    failed: AtomicU64,
    unknown: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            start: Instant::now(),
            next_id: AtomicU64::new(0),
            ops: Mutex::new(Vec::new()),
            stamps: Mutex::new(Vec::new()),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
        }
    }
}

/// The outcome of a client call: ok with its output, or the error's meaning.
pub fn outcome_of<T>(
    result: &Result<T, ClientError>,
    output: impl FnOnce(&T) -> Output,
) -> Outcome {
    match result {
        Ok(v) => Outcome::Ok(output(v)),
        Err(ClientError::Indeterminate { .. }) => Outcome::Unknown,
        Err(_) => Outcome::Failed,
    }
}

impl Recorder {
    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// The instant the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records one completed operation (completion time is now).
    pub fn record(&self, process: u64, key: &str, input: Input, invoke_ns: u64, outcome: Outcome) {
        let counter = match &outcome {
            Outcome::Ok(_) => &self.ok,
            Outcome::Failed => &self.failed,
            Outcome::Unknown => &self.unknown,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let op = Op {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            process,
            key: key.to_string(),
            invoke_ns,
            complete_ns: self.now_ns(),
            input,
            outcome,
        };
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    /// Records the log index and HLC stamp an acknowledged write reported.
    pub fn record_stamp(&self, header: Option<&reprise_api::pb::kv::WriteHeader>) {
        if let Some(h) = header {
            self.stamps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((h.index, h.hlc));
        }
    }

    /// (log index, HLC stamp) of every acknowledged write.
    pub fn stamps(&self) -> Vec<(u64, u64)> {
        self.stamps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every operation recorded so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Operations by outcome.
    pub fn counts(&self) -> OpCounts {
        OpCounts {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            unknown: self.unknown.load(Ordering::Relaxed),
        }
    }

    /// Completion time of the first acknowledged write invoked at or after `t_ns`.
    pub fn first_ok_write_after(&self, t_ns: u64) -> Option<u64> {
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.iter()
            .filter(|o| o.invoke_ns >= t_ns && !matches!(o.input, Input::Read))
            .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
            .map(|o| o.complete_ns)
            .min()
    }
}
