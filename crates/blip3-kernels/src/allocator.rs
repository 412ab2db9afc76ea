//! Keeping freed activation buffers for reuse.
//!
//! Every layer allocates its outputs afresh (a ViT-H MLP output over 5 crops
//! is 75 MB). glibc serves blocks above its mmap threshold (at most 32 MB)
//! with fresh `mmap`s and returns them on free, so each such allocation page
//! faults and has the kernel zero every page again: `clear_page_erms` was
//! 10 % of a profiled image-prompt run. Raising the thresholds keeps freed
//! blocks in the heap, where the next layer's output reuses them.

/// Makes glibc's allocator keep large freed blocks (mmap and trim thresholds
/// raised to 1 GiB). The process's resident memory then stays near its peak
/// instead of dropping between layers. No effect on other C libraries or
/// operating systems.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const ONE_GIB: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes allocator tunables; it is safe to call
        // at any time, and the values are in range.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, ONE_GIB);
            libc::mallopt(libc::M_TRIM_THRESHOLD, ONE_GIB);
        }
    }
}

/// Asks Linux to back the 2 MiB-aligned part of `v`'s spare capacity with
/// transparent huge pages when it is first written (the default policy,
/// `madvise`, gives them only to memory advised so). For weights, written
/// once at load and streamed on every decode step: with 4 KiB pages each
/// step misses the TLB once per page, and in a virtual machine every miss is
/// a two-level page walk. Advice only: nothing happens where the kernel
/// declines.
pub fn advise_huge_pages<T>(v: &mut Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let spare = v.spare_capacity_mut();
        let start = spare.as_ptr() as usize;
        let end = start + std::mem::size_of_val(spare);
        let (first, last) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if last > first {
            // SAFETY: the range lies inside this vector's allocation, and
            // MADV_HUGEPAGE changes how pages are backed, never contents.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// A vector of `len` default values whose large aligned part is backed by
/// huge pages where the system allows ([`advise_huge_pages`]): for weights.
pub fn huge_page_vec<T: Clone + Default>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    advise_huge_pages(&mut v);
    v.resize(len, T::default());
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_page_vectors_hold_defaults_at_every_size() {
        for len in [0usize, 1, 4096, (4 << 20) + 17] {
            let v: Vec<u16> = super::huge_page_vec(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 0));
        }
    }
}
