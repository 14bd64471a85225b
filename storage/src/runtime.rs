//! The async runtime openraft runs on: tokio, with two differences that matter only to the
//! deterministic simulation, which runs every simulated host on the one thread that
//! drives it and marks that thread with [`enter_simulation`]:
//! - openraft draws its randomized election timeouts from the runtime's thread-local
//!   generator. tokio's is seeded from the OS; ours too, unless the simulation seeded it.
//! - openraft's tasks are spawned onto the host's `LocalSet` instead of the runtime. A
//!   crashed host's tasks are then dropped in the order they were spawned; the runtime
//!   drops its tasks in an order set by process-wide task ids, so the connections a crash
//!   closes would close in a different order on each run of one seed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::time::Duration;

use openraft::async_runtime::TokioOneShotSender;
use openraft::{AsyncRuntime, OptionalSend, TokioRuntime};
use rand08::rngs::StdRng;
use rand08::{RngCore, SeedableRng};

thread_local! {
    static RNG: RefCell<StdRng> = RefCell::new(StdRng::from_entropy());
    static SIMULATED: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as running a simulation seeded with `seed` until the guard drops.
pub fn enter_simulation(seed: u64) -> SimulationGuard {
    RNG.with(|rng| *rng.borrow_mut() = StdRng::seed_from_u64(seed));
    SIMULATED.with(|s| s.set(true));
    SimulationGuard(())
}

/// Returns the thread to ordinary behaviour when dropped (see [`enter_simulation`]).
#[derive(Debug)]
pub struct SimulationGuard(());

impl Drop for SimulationGuard {
    fn drop(&mut self) {
        SIMULATED.with(|s| s.set(false));
        RNG.with(|rng| *rng.borrow_mut() = StdRng::from_entropy());
    }
}

/// Handle to the calling thread's generator (see the module comment).
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRng;

impl RngCore for ThreadRng {
    fn next_u32(&mut self) -> u32 {
        RNG.with(|rng| rng.borrow_mut().next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        RNG.with(|rng| rng.borrow_mut().next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        RNG.with(|rng| rng.borrow_mut().fill_bytes(dest))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand08::Error> {
        RNG.with(|rng| rng.borrow_mut().try_fill_bytes(dest))
    }
}

/// tokio, with the seedable thread generator above.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RepriseRuntime;

impl AsyncRuntime for RepriseRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = ThreadRng;
    type OneshotSender<T: OptionalSend> = TokioOneShotSender<T>;
    type OneshotReceiverError = <TokioRuntime as AsyncRuntime>::OneshotReceiverError;
    type OneshotReceiver<T: OptionalSend> = <TokioRuntime as AsyncRuntime>::OneshotReceiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        if SIMULATED.with(Cell::get) {
            tokio::task::spawn_local(future)
        } else {
            TokioRuntime::spawn(future)
        }
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        ThreadRng
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        TokioRuntime::oneshot()
    }
}

#[cfg(test)]
mod tests {
    use rand08::Rng;

    use super::*;

    #[test]
    fn a_seeded_thread_draws_the_same_sequence_again() {
        let draw = || {
            let mut rng = RepriseRuntime::thread_rng();
            (0..8)
                .map(|_| rng.gen_range(150..300u64))
                .collect::<Vec<_>>()
        };
        let first = {
            let _sim = enter_simulation(7);
            draw()
        };
        let again = {
            let _sim = enter_simulation(7);
            draw()
        };
        assert_eq!(again, first);
        let _sim = enter_simulation(8);
        assert_ne!(draw(), first);
    }
}
