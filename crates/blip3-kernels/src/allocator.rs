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
