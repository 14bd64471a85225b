//! Workloads: client processes that issue operations until stopped and record each one.

pub mod bank;
pub mod register;
pub mod set;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared stop flag of a run's workloads.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
