//! The engine thread: continuous batching of decode steps across requests.
//!
//! One OS thread owns the model's compute. Each turn of its loop it
//! 1. admits queued requests while fewer than `max_batch` sequences run:
//!    image encoding (or an image-cache hit, per image), perceiver over all
//!    of the request's images, prefill, first token;
//! 2. runs one decoder pass for every running sequence at once
//!    ([`Pipeline::step`]: the weights are streamed once per pass for up to
//!    four sequences, each with its own KV cache and position);
//! 3. chooses each sequence's next token, streams text deltas to its client
//!    and retires finished or abandoned requests (a closed event channel
//!    means the client went away: its sequences are dropped at once).
//!
//! A new request therefore waits at most one decoder pass (plus the prefills
//! admitted before it), not for other answers to finish.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use blip3_engine::generation::StopReason;
use blip3_engine::{Choice, EncodedImage, GenerationParams, Pipeline, Sequence};
use blip3_preprocess::PreprocessedImage;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::vision_cache::{Tier, VisionCache};

/// One image of a job, as far as the HTTP side could take it.
pub enum JobImage {
    /// Decoded and preprocessed; the ViT still has to run. Cached under `key`.
    Prepared {
        /// Crops and pixel values.
        image: Box<PreprocessedImage>,
        /// Cache key.
        key: String,
    },
    /// Found in the image cache.
    Cached(EncodedImage),
}

impl JobImage {
    /// Crops the image was cut into (each becomes `num_vis_tokens` positions).
    pub fn num_crops(&self) -> usize {
        match self {
            JobImage::Prepared { image, .. } => image.num_crops,
            JobImage::Cached(e) => e.info.num_crops,
        }
    }
}

/// One request (chat or completion) for the engine.
pub struct Job {
    /// Prompt ids (BOS included).
    pub input_ids: Vec<u32>,
    /// The images, in `<image>` order (as many as the prompt's `<image>` tokens).
    pub images: Vec<JobImage>,
    /// Per-choice settings (choice `i` uses `seed + i`).
    pub params: GenerationParams,
    /// Choices.
    pub n: usize,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Whether to report log-probabilities.
    pub logprobs: bool,
    /// Where events go; closed when the client leaves.
    pub events: UnboundedSender<Event>,
    /// When the request was accepted.
    pub accepted: Instant,
    /// The request field that holds the prompt (`messages`, `prompt`), named
    /// by the engine's request errors.
    pub param: &'static str,
}

/// Token log-probabilities as text.
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// Alternatives, best first.
    pub top: Vec<(String, f32)>,
}

/// Per-stage seconds of one request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Waiting in the queue.
    pub queue_s: f64,
    /// ViT over the images not in the cache (0 when all were).
    pub image_encode_s: f64,
    /// Perceiver + splice.
    pub perceiver_s: f64,
    /// Prefill of all choices.
    pub prefill_s: f64,
    /// From the first to the last token.
    pub decode_s: f64,
    /// Accept to first token.
    pub ttft_s: f64,
    /// Where the images came from: `ram` or `disk` (all from that cache
    /// tier), `miss` (all encoded), `mixed`, or `none` (no image).
    pub image_cache: &'static str,
}

/// Token counts of one request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    /// Prompt positions (text + visual tokens).
    pub prompt_tokens: usize,
    /// Of which visual tokens: Σ over images of crops × `num_vis_tokens`.
    pub image_tokens: usize,
    /// Generated tokens over all choices.
    pub completion_tokens: usize,
}

/// What the engine tells a request's handler.
#[derive(Debug, Clone)]
pub enum Event {
    /// A token of choice `index`; `text` is the new visible text (may be
    /// empty while a possible stop string or a partial character is held back).
    Token {
        /// Choice.
        index: usize,
        /// Token id.
        id: u32,
        /// New text.
        text: String,
        /// Log-probabilities, when requested.
        logprob: Option<TokenLogprob>,
    },
    /// Choice `index` ended (`stop` or `length`).
    Finish {
        /// Choice.
        index: usize,
        /// OpenAI finish reason.
        reason: &'static str,
    },
    /// All choices ended.
    Done {
        /// Token counts.
        usage: Usage,
        /// Stage timings.
        timings: Timings,
    },
    /// The request failed.
    Error(ApiError),
}

struct ChoiceState {
    seq: Sequence,
    emitted: usize,
    done: bool,
}

struct Active {
    job: Job,
    choices: Vec<ChoiceState>,
    usage: Usage,
    timings: Timings,
    first_token: Option<Instant>,
    decode_start: Instant,
}

/// Settings of the engine loop.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Most sequences decoded together.
    pub max_batch: usize,
}

/// Runs the engine loop until every job sender is dropped and the work is done.
pub fn run(
    pipeline: Arc<Pipeline>,
    jobs: Receiver<Job>,
    cache: Arc<Mutex<VisionCache>>,
    metrics: Arc<Metrics>,
    config: SchedulerConfig,
) {
    let mut active: Vec<Active> = Vec::new();
    let mut open = true;
    loop {
        // 1. Admit.
        while open && running(&active) < config.max_batch.max(1) {
            let job = if active.is_empty() {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => {
                        open = false;
                        break;
                    }
                }
            } else {
                match jobs.try_recv() {
                    Ok(job) => job,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            };
            metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            if job.events.is_closed() {
                Metrics::add(&metrics.cancelled, 1);
                continue;
            }
            let events = job.events.clone();
            match admit(&pipeline, job, &cache, &metrics) {
                Ok(Some(a)) => active.push(a),
                Ok(None) => {}
                Err(e) => {
                    Metrics::add(&metrics.errors, 1);
                    let _ = events.send(Event::Error(e));
                }
            }
        }
        if active.is_empty() {
            if open {
                continue;
            }
            return;
        }
        metrics
            .active_sequences
            .store(running(&active) as u64, Ordering::Relaxed);

        // 2. One batched decoder pass.
        let mut seqs: Vec<&mut Sequence> = active
            .iter_mut()
            .flat_map(|a| a.choices.iter_mut())
            .filter(|c| !c.done && c.seq.needs_step())
            .map(|c| &mut c.seq)
            .collect();
        let rows = seqs.len();
        if rows > 0 {
            if let Err(e) = pipeline.step(&mut seqs) {
                let err = ApiError::internal(format!("decode failed: {e}"));
                for a in active.drain(..) {
                    let _ = a.job.events.send(Event::Error(err.clone()));
                }
                Metrics::add(&metrics.errors, 1);
                continue;
            }
            Metrics::add(&metrics.decode_steps, 1);
            Metrics::add(&metrics.decode_rows, rows as u64);
        }

        // 3. Choose, stream, retire.
        let mut i = 0;
        while i < active.len() {
            let a = &mut active[i];
            if a.job.events.is_closed() {
                Metrics::add(&metrics.cancelled, 1);
                active.swap_remove(i);
                continue;
            }
            let mut failed = None;
            for index in 0..a.choices.len() {
                if !a.choices[index].done {
                    if let Err(e) = advance(&pipeline, a, index) {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                Metrics::add(&metrics.errors, 1);
                let _ = a.job.events.send(Event::Error(e));
                active.swap_remove(i);
                continue;
            }
            if a.choices.iter().all(|c| c.done) {
                let a = active.swap_remove(i);
                finish(a, &metrics);
                continue;
            }
            i += 1;
        }
        metrics
            .active_sequences
            .store(running(&active) as u64, Ordering::Relaxed);
    }
}

fn running(active: &[Active]) -> usize {
    active
        .iter()
        .map(|a| a.choices.iter().filter(|c| !c.done).count())
        .sum()
}

/// Encodes every image not in the cache (or takes it from there), prefills
/// every choice and chooses their first tokens.
fn admit(
    pipeline: &Pipeline,
    job: Job,
    cache: &Mutex<VisionCache>,
    metrics: &Metrics,
) -> Result<Option<Active>, ApiError> {
    let param = job.param;
    let engine = |e: blip3_engine::EngineError| match e {
        blip3_engine::EngineError::Request(m) => ApiError::invalid(m, Some(param)),
        other => ApiError::internal(other.to_string()),
    };
    let mut timings = Timings {
        queue_s: job.accepted.elapsed().as_secs_f64(),
        ..Default::default()
    };
    let t = Instant::now();
    let mut encoded = Vec::with_capacity(job.images.len());
    let mut sources = Vec::with_capacity(job.images.len());
    for image in &job.images {
        match image {
            JobImage::Cached(e) => {
                sources.push("ram");
                encoded.push(e.clone());
            }
            JobImage::Prepared { image, key } => {
                // Another request (or an earlier image of this one) may have
                // encoded the same image meanwhile.
                let hit = cache.lock().ok().and_then(|mut c| c.get(key));
                match hit {
                    Some((e, tier)) => {
                        Metrics::add(&metrics.cache_hits, 1);
                        if tier == Tier::Disk {
                            Metrics::add(&metrics.cache_disk_hits, 1);
                        }
                        sources.push(if tier == Tier::Disk { "disk" } else { "ram" });
                        encoded.push(e);
                    }
                    None => {
                        Metrics::add(&metrics.cache_misses, 1);
                        sources.push("miss");
                        let e = pipeline.encode_image(image).map_err(engine)?;
                        if let Ok(mut c) = cache.lock() {
                            c.insert(key.clone(), e.clone());
                            metrics
                                .cache_bytes
                                .store(c.bytes() as u64, Ordering::Relaxed);
                        }
                        encoded.push(e);
                    }
                }
            }
        }
    }
    timings.image_cache = match sources.split_first() {
        None => "none",
        Some((first, rest)) if rest.iter().all(|s| s == first) => *first,
        Some(_) => "mixed",
    };
    timings.image_encode_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let embeds = pipeline
        .prompt_embeds(&job.input_ids, &encoded)
        .map_err(engine)?;
    timings.perceiver_s = t.elapsed().as_secs_f64();
    let positions = embeds.dims().first().copied().unwrap_or(0);
    let latents = pipeline
        .model()
        .config()
        .vision_tokenizer_config
        .num_vis_tokens;
    let usage = Usage {
        prompt_tokens: positions,
        image_tokens: encoded.iter().map(|e| e.info.num_crops * latents).sum(),
        completion_tokens: 0,
    };

    let t = Instant::now();
    let mut choices = Vec::with_capacity(job.n);
    for index in 0..job.n {
        let mut params = job.params.clone();
        params.sampling.seed = params.sampling.seed.wrapping_add(index as u64);
        let seq = pipeline
            .start(&embeds, &job.input_ids, &params)
            .map_err(engine)?;
        choices.push(ChoiceState {
            seq,
            emitted: 0,
            done: false,
        });
    }
    timings.prefill_s = t.elapsed().as_secs_f64();
    Metrics::add(&metrics.prompt_tokens, (positions * job.n) as u64);
    let mut active = Active {
        job,
        choices,
        usage,
        timings,
        first_token: None,
        decode_start: Instant::now(),
    };
    for index in 0..active.choices.len() {
        advance(pipeline, &mut active, index)?;
    }
    if active.job.events.is_closed() {
        Metrics::add(&metrics.cancelled, 1);
        return Ok(None);
    }
    if active.choices.iter().all(|c| c.done) {
        finish(active, metrics);
        return Ok(None);
    }
    Ok(Some(active))
}

/// Chooses choice `index`'s next token and streams what became visible.
fn advance(pipeline: &Pipeline, a: &mut Active, index: usize) -> Result<(), ApiError> {
    let state = &mut a.choices[index];
    if state.seq.finished.is_some() {
        state.done = true;
        return Ok(());
    }
    let choice: Choice = pipeline
        .choose(&mut state.seq)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if a.first_token.is_none() {
        a.first_token = Some(Instant::now());
        a.timings.ttft_s = a.job.accepted.elapsed().as_secs_f64();
        a.decode_start = Instant::now();
    }
    a.usage.completion_tokens += 1;
    let tokenizer = pipeline.tokenizer();
    let logprob = a.job.logprobs.then(|| TokenLogprob {
        token: tokenizer.decode(&[choice.id], false),
        logprob: choice.logprob,
        top: choice
            .top
            .iter()
            .map(|&(id, lp)| (tokenizer.decode(&[id], false), lp))
            .collect(),
    });
    // Visible text: special tokens skipped, cut at <|end|>.
    let mut text = tokenizer.decode_answer(&state.seq.generated);
    let mut reason = match state.seq.finished {
        Some(StopReason::MaxNewTokens) => Some("length"),
        Some(_) => Some("stop"),
        None => None,
    };
    let search_from = state
        .emitted
        .saturating_sub(a.job.stop.iter().map(String::len).max().unwrap_or(0));
    let hit = a
        .job
        .stop
        .iter()
        .filter_map(|s| {
            let from = floor_boundary(&text, search_from);
            text[from..].find(s.as_str()).map(|p| from + p)
        })
        .min();
    if let Some(p) = hit {
        text.truncate(p);
        reason = Some("stop");
    }
    let end = if reason.is_some() {
        text.len()
    } else {
        // Hold back a possible stop-string prefix and a partial character.
        let hold = a.job.stop.iter().map(String::len).max().unwrap_or(1) - 1;
        let mut end = floor_boundary(&text, text.len().saturating_sub(hold));
        if text[..end].ends_with('\u{FFFD}') {
            end -= '\u{FFFD}'.len_utf8();
        }
        end
    };
    let delta = if end > state.emitted && text.is_char_boundary(state.emitted) {
        text[state.emitted..end].to_string()
    } else {
        String::new()
    };
    state.emitted = state.emitted.max(end);
    let _ = a.job.events.send(Event::Token {
        index,
        id: choice.id,
        text: delta,
        logprob,
    });
    if let Some(reason) = reason {
        state.done = true;
        let _ = a.job.events.send(Event::Finish { index, reason });
    }
    Ok(())
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn finish(mut a: Active, metrics: &Metrics) {
    a.timings.decode_s = a.decode_start.elapsed().as_secs_f64();
    Metrics::add(&metrics.completion_tokens, a.usage.completion_tokens as u64);
    let _ = a.job.events.send(Event::Done {
        usage: a.usage,
        timings: a.timings,
    });
}
