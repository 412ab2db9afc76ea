//! Per-thread buffers reused from call to call, so that a decode step (about
//! 130 GEMVs, each quantising its activation row first) allocates nothing
//! once the first step has sized them.

use std::cell::RefCell;
use std::thread::LocalKey;

use half::bf16;

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

/// A new vector of `len` zeros, written by the thread pool when it is large.
/// Large freed blocks stay in the heap ([`crate::allocator`]), so a fresh
/// output buffer is not the kernel's zero pages: one thread's `memset` of a
/// 75 MB ViT MLP output, with the other threads idle, was 4 % of image
/// encoding.
pub fn zeroed<T: Default + Copy + Send + Sync>(len: usize) -> Vec<T> {
    use rayon::prelude::*;
    const SERIAL_BYTES: usize = 1 << 20;
    if len * std::mem::size_of::<T>() < SERIAL_BYTES {
        return vec![T::default(); len];
    }
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(SERIAL_BYTES / std::mem::size_of::<T>().max(1))
        .for_each(|chunk| chunk.fill(std::mem::MaybeUninit::new(T::default())));
    // SAFETY: the capacity is at least `len`, and the loop above wrote every
    // one of the first `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// Resizes `v` to `len` elements (keeping its allocation), all `T::default()`.
pub(crate) fn reset<T: Default + Clone>(v: &mut Vec<T>, len: usize) {
    v.clear();
    v.resize(len, T::default());
}

/// A BF16 buffer whose visible part starts on a 64-byte boundary: tile rows
/// then never straddle cache lines.
pub(crate) struct AlignedBf16 {
    buf: Vec<bf16>,
    start: usize,
    len: usize,
}

impl Default for AlignedBf16 {
    fn default() -> Self {
        Self::new()
    }
}

impl AlignedBf16 {
    pub(crate) const fn new() -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            len: 0,
        }
    }

    /// `len` zeros, aligned (the allocation is kept from call to call).
    pub(crate) fn reset(&mut self, len: usize) -> &mut [bf16] {
        self.buf.clear();
        self.resize(len)
    }

    /// `len` elements, aligned, holding whatever an earlier use left (zeros
    /// where the buffer grew): for callers that overwrite them all.
    pub(crate) fn resize(&mut self, len: usize) -> &mut [bf16] {
        // 32 BF16 of slack: enough to reach the next 64-byte boundary.
        self.buf.resize(len + 32, bf16::ZERO);
        self.start = self.buf.as_ptr().align_offset(64).min(32);
        self.len = len;
        &mut self.buf[self.start..self.start + len]
    }

    pub(crate) fn as_slice(&self) -> &[bf16] {
        &self.buf[self.start..self.start + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [bf16] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static BUFFER: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    #[test]
    fn zeroed_gives_zeros_at_every_size() {
        for len in [0usize, 1, 1000, (1 << 20) / 4 + 3, 1 << 20] {
            let v: Vec<f32> = super::zeroed(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x.to_bits() == 0));
        }
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
