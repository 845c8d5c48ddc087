//! Locking without poisoning: a thread that panicked while holding a lock leaves data that
//! is still consistent for every use in this crate (counters, queues, caches), so callers take
//! the guard anyway instead of spreading the panic. One helper instead of the same
//! `unwrap_or_else(|e| e.into_inner())` at every lock.

use std::sync::{Mutex, MutexGuard};

pub trait Locked<T> {
    /// Lock, recovering the guard if a previous holder panicked.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_still_yields_its_data() {
        let m = Arc::new(Mutex::new(5));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.lock().is_err(), "poisoned");
        assert_eq!(*m.locked(), 5);
    }
}
