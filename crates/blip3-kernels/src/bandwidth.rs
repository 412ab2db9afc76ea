//! Memory-bandwidth probe: how fast this machine streams a large buffer, so a
//! decode rate can be reported as a fraction of its roofline
//! (tokens/s × weight bytes per token ÷ bandwidth).

use std::time::Instant;

/// Best-of-`passes` read bandwidth in bytes/s over a `bytes`-sized buffer,
/// using `threads` threads (each sums its own contiguous part).
pub fn read_bandwidth(bytes: usize, threads: usize, passes: usize) -> f64 {
    let words = (bytes / 8).max(threads.max(1) * 1024);
    // Non-zero fill so every page is really allocated.
    let buf: Vec<u64> = (0..words as u64).collect();
    let threads = threads.max(1);
    let part = words.div_ceil(threads);
    let mut best = 0f64;
    for _ in 0..passes.max(1) {
        let start = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = buf
                .chunks(part)
                .map(|chunk| s.spawn(move || sum_words(chunk)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        });
        let secs = start.elapsed().as_secs_f64();
        std::hint::black_box(total);
        best = best.max((words * 8) as f64 / secs);
    }
    best
}

/// Wrapping sum in 8 independent lanes (vectorises to full-width loads).
fn sum_words(words: &[u64]) -> u64 {
    let mut lanes = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        for i in 0..8 {
            lanes[i] = lanes[i].wrapping_add(c[i]);
        }
    }
    let tail: u64 = chunks.remainder().iter().fold(0, |a, &b| a.wrapping_add(b));
    lanes.iter().fold(tail, |a, &b| a.wrapping_add(b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn probe_reports_a_positive_rate() {
        let bw = super::read_bandwidth(1 << 20, 2, 2);
        assert!(bw > 1e6, "{bw}");
    }

    #[test]
    fn sum_is_exact() {
        let v: Vec<u64> = (0..1003).collect();
        assert_eq!(super::sum_words(&v), 1002 * 1003 / 2);
    }
}
