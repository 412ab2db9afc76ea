//! The thread pool the kernels run on.
//!
//! Every kernel splits its work with rayon. Called from a thread outside the
//! pool (the program's main thread, a server's blocking task), each parallel
//! region injects a job into the pool and puts the caller to sleep until it
//! is done: two thread wake-ups per region. A decode step has about 160
//! regions, so callers that run many kernels in a row move onto a worker
//! first with [`on_pool`]; the regions then split work with the other
//! workers directly.

/// Runs `work` on a worker thread of the global pool (directly when already
/// on one) and returns its result.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| work())
}

/// Worker threads of the global pool.
pub fn threads() -> usize {
    rayon::current_num_threads()
}

#[cfg(test)]
mod tests {
    #[test]
    fn work_runs_on_a_pool_thread() {
        assert!(rayon::current_thread_index().is_none());
        assert!(super::on_pool(|| rayon::current_thread_index().is_some()));
    }
}
