//! Counters and gauges exported at `GET /metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Server-wide counters; every field is updated lock-free.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Chat completion requests received.
    pub requests: AtomicU64,
    /// Requests answered with a 4xx/5xx error.
    pub errors: AtomicU64,
    /// Requests refused with 429 because the queue was full.
    pub rejected: AtomicU64,
    /// Requests whose client went away before the answer was complete.
    pub cancelled: AtomicU64,
    /// Prompt positions prefilled (text + visual tokens).
    pub prompt_tokens: AtomicU64,
    /// Tokens generated.
    pub completion_tokens: AtomicU64,
    /// Image-embedding cache hits (ViT skipped).
    pub cache_hits: AtomicU64,
    /// Image-embedding cache misses (ViT run).
    pub cache_misses: AtomicU64,
    /// Of the hits, those served from the disk tier.
    pub cache_disk_hits: AtomicU64,
    /// Bytes held by the RAM tier.
    pub cache_bytes: AtomicU64,
    /// Requests waiting for the engine.
    pub queue_depth: AtomicU64,
    /// Sequences being generated.
    pub active_sequences: AtomicU64,
    /// Batched decoder passes.
    pub decode_steps: AtomicU64,
    /// Sequence rows over all decoder passes (÷ steps = mean batch).
    pub decode_rows: AtomicU64,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Prometheus exposition text.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 14] = [
            (
                "blip3_requests_total",
                "counter",
                "Chat completion requests received.",
                &self.requests,
            ),
            (
                "blip3_request_errors_total",
                "counter",
                "Requests answered with an error.",
                &self.errors,
            ),
            (
                "blip3_requests_rejected_total",
                "counter",
                "Requests refused with 429 (queue full).",
                &self.rejected,
            ),
            (
                "blip3_requests_cancelled_total",
                "counter",
                "Requests abandoned by their client.",
                &self.cancelled,
            ),
            (
                "blip3_prompt_tokens_total",
                "counter",
                "Prompt positions prefilled (text + visual).",
                &self.prompt_tokens,
            ),
            (
                "blip3_completion_tokens_total",
                "counter",
                "Tokens generated.",
                &self.completion_tokens,
            ),
            (
                "blip3_vision_cache_hits_total",
                "counter",
                "Image-embedding cache hits (ViT skipped).",
                &self.cache_hits,
            ),
            (
                "blip3_vision_cache_misses_total",
                "counter",
                "Image-embedding cache misses.",
                &self.cache_misses,
            ),
            (
                "blip3_vision_cache_disk_hits_total",
                "counter",
                "Cache hits served by the disk tier.",
                &self.cache_disk_hits,
            ),
            (
                "blip3_vision_cache_bytes",
                "gauge",
                "Bytes held by the RAM tier of the image cache.",
                &self.cache_bytes,
            ),
            (
                "blip3_queue_depth",
                "gauge",
                "Requests waiting for the engine.",
                &self.queue_depth,
            ),
            (
                "blip3_active_sequences",
                "gauge",
                "Sequences being generated.",
                &self.active_sequences,
            ),
            (
                "blip3_decode_steps_total",
                "counter",
                "Batched decoder passes.",
                &self.decode_steps,
            ),
            (
                "blip3_decode_rows_total",
                "counter",
                "Sequence rows over all decoder passes.",
                &self.decode_rows,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}
