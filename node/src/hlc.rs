//! Hybrid logical clock used by the leader to stamp every command. The physical part
//! comes from a `Clock` (the seam chaos uses to inject skew); stamps are strictly
//! increasing on a node and never fall below the highest stamp already applied, so a new
//! leader with a slow clock still stamps after its predecessor.
//!
//! Layout: milliseconds since the Unix epoch in the high 48 bits, a logical counter in the
//! low 16 bits.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const LOGICAL_BITS: u32 = 16;

/// Source of physical time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The machine clock plus an adjustable offset (0 unless a chaos fault sets one).
#[derive(Debug, Default)]
pub struct SystemClock {
    skew_ms: AtomicI64,
}

impl SystemClock {
    /// Shifts every reading by `skew_ms` (may be negative).
    pub fn set_skew_ms(&self, skew_ms: i64) {
        self.skew_ms.store(skew_ms, Ordering::Relaxed);
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        real.saturating_add_signed(self.skew_ms.load(Ordering::Relaxed))
    }
}

/// The hybrid logical clock of one node.
pub struct Hlc {
    clock: Arc<dyn Clock>,
    last: AtomicU64,
}

impl Hlc {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Hlc {
            clock,
            last: AtomicU64::new(0),
        }
    }

    /// A stamp greater than every earlier stamp of this node and than `floor`.
    pub fn stamp(&self, floor: u64) -> u64 {
        let physical = self.clock.now_ms() << LOGICAL_BITS;
        let mut prev = self.last.load(Ordering::Acquire);
        loop {
            let next = physical.max(prev.max(floor) + 1);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next,
                Err(actual) => prev = actual,
            }
        }
    }
}

/// Milliseconds since the Unix epoch of a stamp.
pub fn physical_ms(stamp: u64) -> u64 {
    stamp >> LOGICAL_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u64);
    impl Clock for Fixed {
        fn now_ms(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn stamps_increase_with_a_stopped_clock_and_respect_the_floor() {
        let hlc = Hlc::new(Arc::new(Fixed(1_000)));
        let a = hlc.stamp(0);
        let b = hlc.stamp(0);
        assert!(b > a);
        assert_eq!(physical_ms(a), 1_000);
        let floor = 5_000 << LOGICAL_BITS;
        let c = hlc.stamp(floor);
        assert!(c > floor && c > b);
    }

    #[test]
    fn skew_moves_the_physical_part() {
        let clock = SystemClock::default();
        let before = clock.now_ms();
        clock.set_skew_ms(-60_000);
        assert!(clock.now_ms() + 50_000 < before + 1_000);
    }
}
