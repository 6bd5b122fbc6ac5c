//! Who runs libtorch's CPU work: its own (OpenMP) threads, or one thread while rayon's
//! threads carry the parallelism.
//!
//! Why: svcca runs many small libtorch steps between rayon's parallel ones (the
//! similarity kernels, faer's products, the FFTs, decompositions of stacks of small
//! matrices split across rayon's threads). Between its parallel steps libtorch's idle
//! OpenMP threads spin-wait (libgomp's default), taking the cores from rayon's threads
//! and from the serial steps in between; and LAPACK cannot use two threads on a small
//! problem, yet its threads still wait for each other. So such work runs with libtorch
//! on one thread (benches/records/2026-12-01.md, "Analysis rows" and "The pass over the
//! data on rayon's threads").
//!
//! libtorch's thread count is process-wide state. It is changed only here, under one
//! lock, by a guard ([`LibtorchOnOneThread`]) that counts its holders: the first saves
//! the count and sets one, the last restores the saved count. Callers that overlap (two
//! threads, or a guard taken inside another on a rayon thread) all run with one thread,
//! and the count is restored once, to what it was before the first: no caller restores
//! a count another one set.

use std::sync::Mutex;
use tch::Device;

/// A thread count held at one by guards: the holders, and the count to restore when the
/// last one leaves, behind one lock. `get` and `set` are libtorch's (tests use a stand-in).
struct Counted {
    held: Mutex<Held>,
    get: fn() -> i32,
    set: fn(i32),
}

struct Held {
    holders: usize,
    saved: i32,
}

impl Counted {
    const fn new(get: fn() -> i32, set: fn(i32)) -> Counted {
        Counted { held: Mutex::new(Held { holders: 0, saved: 0 }), get, set }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // Nothing between taking the lock and updating the count can panic, so a
        // poisoned lock still holds a consistent count.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self) {
        let mut held = self.held();
        if held.holders == 0 {
            held.saved = (self.get)();
        }
        held.holders += 1;
        // Set by every holder, not only the first: OpenMP keeps the count per thread,
        // and this thread may not have seen the first holder's setting.
        (self.set)(1);
    }

    fn leave(&self) {
        let mut held = self.held();
        held.holders -= 1;
        if held.holders == 0 {
            (self.set)(held.saved);
        }
    }

    fn set_outside_guards(&self, n: i32) {
        let mut held = self.held();
        if held.holders == 0 {
            (self.set)(n);
        } else {
            held.saved = n;
        }
    }
}

static LIBTORCH: Counted = Counted::new(tch::get_num_threads, tch::set_num_threads);

/// While it lives, libtorch's CPU work runs on one thread (see the module's docs).
#[must_use = "libtorch runs on one thread only while the guard lives"]
pub(crate) struct LibtorchOnOneThread {
    counted: &'static Counted,
}

impl LibtorchOnOneThread {
    pub(crate) fn new() -> LibtorchOnOneThread {
        LibtorchOnOneThread::of(&LIBTORCH)
    }

    fn of(counted: &'static Counted) -> LibtorchOnOneThread {
        counted.enter();
        LibtorchOnOneThread { counted }
    }
}

impl Default for LibtorchOnOneThread {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for LibtorchOnOneThread {
    fn drop(&mut self) {
        self.counted.leave();
    }
}

/// Sets libtorch's CPU threads to `n` (`train.threads`): at once, or, while guards hold
/// it at one, when the last of them is dropped.
pub(crate) fn set_libtorch_threads(n: i32) {
    LIBTORCH.set_outside_guards(n);
}

/// Runs `f` with libtorch's CPU threads at one and its parallelism left to rayon, for
/// work on `device` made of many small steps (a row of the learning-dynamics matrix, a
/// pass over the data). Elsewhere than the CPU, `f` as it is.
pub(crate) fn on_rayon<T>(device: Device, f: impl FnOnce() -> T) -> T {
    if device != Device::Cpu {
        return f();
    }
    let _one = LibtorchOnOneThread::new();
    f()
}

/// Runs `f`, which decomposes matrices of at most `n` rows, [`on_rayon`] when they are
/// small (n <= 512): LAPACK cannot use two threads on a 64 x 64 problem, but its OpenMP
/// threads spin-wait for each other, and a stack of small problems is split across
/// rayon's threads instead. When anything else wanted the cores (a second job, a
/// build), a stack of small problems ran many times slower on libtorch's threads than
/// on one (seen while developing; no benchmark records it).
pub(crate) fn single_threaded<T>(device: Device, n: i64, f: impl FnOnce() -> T) -> T {
    if n > 512 {
        return f();
    }
    on_rayon(device, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Barrier;

    // A stand-in for libtorch's count (process-wide, as the worst case), so that other
    // tests' guards on libtorch's own count cannot disturb these.
    static COUNT: AtomicI32 = AtomicI32::new(4);
    static FAKE: Counted = Counted::new(|| COUNT.load(Ordering::SeqCst), |n| COUNT.store(n, Ordering::SeqCst));
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn a_guard_restores_the_count_it_found() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        FAKE.set_outside_guards(2);
        {
            let _one = LibtorchOnOneThread::of(&FAKE);
            assert_eq!(COUNT.load(Ordering::SeqCst), 1);
            {
                let _nested = LibtorchOnOneThread::of(&FAKE);
                assert_eq!(COUNT.load(Ordering::SeqCst), 1);
            }
            assert_eq!(COUNT.load(Ordering::SeqCst), 1, "the inner guard does not restore while the outer one lives");
        }
        assert_eq!(COUNT.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn overlapping_guards_on_two_threads_see_one_thread_and_restore_once() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        FAKE.set_outside_guards(2);
        // A takes its guard, then B; A drops first, B last. Each caller saving and
        // restoring what it found would leave B running on A's restored two threads, and
        // then set B's saved one for good.
        let (taken, a_dropped) = (Barrier::new(2), Barrier::new(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                let one = LibtorchOnOneThread::of(&FAKE);
                taken.wait();
                taken.wait();
                drop(one);
                a_dropped.wait();
            });
            s.spawn(|| {
                taken.wait();
                let _one = LibtorchOnOneThread::of(&FAKE);
                taken.wait();
                a_dropped.wait();
                assert_eq!(COUNT.load(Ordering::SeqCst), 1, "A's drop did not restore the count under B");
            });
        });
        assert_eq!(COUNT.load(Ordering::SeqCst), 2, "restored to the count before the first guard");
    }

    #[test]
    fn a_count_set_under_a_guard_applies_when_it_is_dropped() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        FAKE.set_outside_guards(2);
        {
            let _one = LibtorchOnOneThread::of(&FAKE);
            FAKE.set_outside_guards(3);
            assert_eq!(COUNT.load(Ordering::SeqCst), 1);
        }
        assert_eq!(COUNT.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn libtorch_runs_on_one_thread_on_rayon() {
        assert_eq!(on_rayon(Device::Cpu, tch::get_num_threads), 1);
        assert_eq!(single_threaded(Device::Cpu, 64, tch::get_num_threads), 1);
    }
}
