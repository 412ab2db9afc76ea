//! Per-thread buffers reused from call to call, so that a decode step (about
//! 130 GEMVs, each quantising its activation row first) allocates nothing
//! once the first step has sized them.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Runs `f` with this thread's value behind `key`, or with a fresh default
/// when the thread is already inside `f` (a kernel entered again while it
/// waits in a parallel region and the pool hands it another caller's job).
pub fn with_reused<T: Default, R>(
    key: &'static LocalKey<RefCell<T>>,
    f: impl FnOnce(&mut T) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut value) => f(&mut value),
        Err(_) => f(&mut T::default()),
    })
}

/// Resizes `v` to `len` elements (keeping its allocation), all `T::default()`.
pub(crate) fn reset<T: Default + Clone>(v: &mut Vec<T>, len: usize) {
    v.clear();
    v.resize(len, T::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static BUFFER: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    #[test]
    fn reuses_the_allocation_and_survives_reentry() {
        let first = with_reused(&BUFFER, |v| {
            reset(v, 64);
            v.as_ptr() as usize
        });
        let again = with_reused(&BUFFER, |v| {
            reset(v, 32);
            // Entered again while in use: a separate, fresh value.
            let inner = with_reused(&BUFFER, |w| w.len());
            (v.as_ptr() as usize, inner)
        });
        assert_eq!(again, (first, 0));
    }
}
