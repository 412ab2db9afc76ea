//! The engine thread: continuous batching of decode steps across requests,
//! with admission cut into small units so that it never freezes a stream.
//!
//! One OS thread owns the model's compute. Each turn of its loop it
//! 1. takes queued requests while fewer than `max_batch` sequences run or
//!    are being admitted;
//! 2. does one unit of admission work for the oldest request being
//!    admitted: one crop through the vision tower (or an image-cache hit),
//!    the perceiver and splice, or one chunk of `prefill_chunk` prompt
//!    positions; a request whose last unit is done gets its first tokens
//!    and joins the running ones;
//! 3. runs one decoder pass for every running sequence at once
//!    ([`Pipeline::step`]: the weights are streamed once per pass for up to
//!    four sequences, each with its own KV cache and position);
//! 4. chooses each sequence's next token, streams text deltas to its client
//!    and retires finished or abandoned requests (a closed event channel
//!    means the client went away: its sequences are dropped at once).
//!
//! A running stream therefore waits at most one admission unit (about one
//! crop's ViT) per token while other requests arrive, instead of their whole
//! image encoding and prefill. With nothing running, admission units run
//! back to back and the prompt is prefilled in one piece.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::generation::StopReason;
use crate::{Choice, EncodedImage, GenerationParams, Pipeline, Prefill, Sequence};
use blip3_preprocess::PreprocessedImage;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use super::metrics::Metrics;
use super::request_error::RequestError;
use super::vision_cache::{Tier, VisionCache};

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
    /// Decoder passes other requests ran while this one was admitted (its
    /// images encoded crop by crop, its prompt prefilled chunk by chunk).
    pub admission_passes: u64,
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
        /// The engine's decoder-pass count when the token was chosen: tokens
        /// of different requests with the same or nearby counts were
        /// produced together.
        pass: u64,
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
    Error(RequestError),
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
    /// Prompt positions prefilled per admission unit while other sequences
    /// are running (with none running, a prompt is prefilled whole).
    pub prefill_chunk: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_batch: 8,
            prefill_chunk: 128,
        }
    }
}

/// Where a request being admitted stands.
enum Stage {
    /// Encoding image `image`, crop `crop` next; finished crops' tokens.
    Images {
        image: usize,
        crop: usize,
        crops: Vec<candle_core::Tensor>,
    },
    /// Perceiver and splice next.
    Embeds,
    /// Prefilling choice `choice` (its prefill set up once started).
    Prefill {
        embeds: candle_core::Tensor,
        choice: usize,
        prefill: Option<Prefill>,
    },
}

/// A request being admitted, one unit of work at a time.
struct Admitting {
    job: Job,
    stage: Stage,
    encoded: Vec<EncodedImage>,
    sources: Vec<&'static str>,
    choices: Vec<ChoiceState>,
    timings: Timings,
    positions: usize,
    /// The decoder-pass count at its first admission unit.
    first_pass: Option<u64>,
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
    let mut admitting: VecDeque<Admitting> = VecDeque::new();
    let mut open = true;
    let mut pass: u64 = 0;
    loop {
        // 1. Take queued requests.
        while open && running(&active) + admitting.len() < config.max_batch.max(1) {
            let job = if active.is_empty() && admitting.is_empty() {
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
            admitting.push_back(Admitting {
                timings: Timings {
                    queue_s: job.accepted.elapsed().as_secs_f64(),
                    ..Default::default()
                },
                job,
                stage: Stage::Images {
                    image: 0,
                    crop: 0,
                    crops: Vec::new(),
                },
                encoded: Vec::new(),
                sources: Vec::new(),
                choices: Vec::new(),
                positions: 0,
                first_pass: None,
            });
        }
        if active.is_empty() && admitting.is_empty() {
            if open {
                continue;
            }
            return;
        }

        // 2. One unit of admission work (a running stream waits for no more).
        if let Some(mut a) = admitting.pop_front() {
            if a.job.events.is_closed() {
                Metrics::add(&metrics.cancelled, 1);
            } else {
                let chunk = if active.is_empty() {
                    usize::MAX
                } else {
                    config.prefill_chunk.max(1)
                };
                let events = a.job.events.clone();
                a.first_pass.get_or_insert(pass);
                // A panic fails this request only (without the panic's
                // text); the engine thread goes on.
                let unit = catch_unwind(AssertUnwindSafe(|| {
                    admit_unit(&pipeline, &mut a, chunk, &cache, &metrics)
                }))
                .unwrap_or_else(|_| Err(RequestError::internal("internal error")));
                match unit {
                    Ok(false) => admitting.push_front(a),
                    Ok(true) => match start_streaming(&pipeline, a, pass, &metrics) {
                        Ok(Some(started)) => active.push(started),
                        Ok(None) => {}
                        Err((e, events)) => {
                            Metrics::add(&metrics.errors, 1);
                            let _ = events.send(Event::Error(e));
                        }
                    },
                    Err(e) => {
                        Metrics::add(&metrics.errors, 1);
                        let _ = events.send(Event::Error(e));
                    }
                }
            }
        }
        metrics
            .active_sequences
            .store(running(&active) as u64, Ordering::Relaxed);

        // 3. One batched decoder pass.
        let mut seqs: Vec<&mut Sequence> = active
            .iter_mut()
            .flat_map(|a| a.choices.iter_mut())
            .filter(|c| !c.done && c.seq.needs_step())
            .map(|c| &mut c.seq)
            .collect();
        let rows = seqs.len();
        if rows > 0 {
            let stepped = catch_unwind(AssertUnwindSafe(|| pipeline.step(&mut seqs)))
                .unwrap_or_else(|_| Err(crate::EngineError::Request("internal error".into())));
            if let Err(e) = stepped {
                let err = RequestError::internal(format!("decode failed: {e}"));
                for a in active.drain(..) {
                    let _ = a.job.events.send(Event::Error(err.clone()));
                }
                Metrics::add(&metrics.errors, 1);
                continue;
            }
            pass += 1;
            Metrics::add(&metrics.decode_steps, 1);
            Metrics::add(&metrics.decode_rows, rows as u64);
        }

        // 4. Choose, stream, retire.
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
                    let advanced =
                        catch_unwind(AssertUnwindSafe(|| advance(&pipeline, a, index, pass)))
                            .unwrap_or_else(|_| Err(RequestError::internal("internal error")));
                    if let Err(e) = advanced {
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

/// Does the next unit of `a`'s admission: one crop (or every cached image
/// up to the next crop to encode), the perceiver and splice, or one prefill
/// chunk of at most `chunk` positions. `true` once every choice is
/// prefilled.
fn admit_unit(
    pipeline: &Pipeline,
    a: &mut Admitting,
    chunk: usize,
    cache: &Mutex<VisionCache>,
    metrics: &Metrics,
) -> Result<bool, RequestError> {
    let param = a.job.param;
    let engine = |e: crate::EngineError| match e {
        crate::EngineError::Request(m) => RequestError::invalid(m, Some(param)),
        other => RequestError::internal(other.to_string()),
    };
    let t = Instant::now();
    match &mut a.stage {
        Stage::Images { image, crop, crops } => {
            // Cached images cost nothing: take them until a crop needs the tower.
            while let Some(job_image) = a.job.images.get(*image) {
                match job_image {
                    JobImage::Cached(e) => {
                        a.sources.push("ram");
                        a.encoded.push(e.clone());
                        *image += 1;
                    }
                    JobImage::Prepared {
                        image: prepared,
                        key,
                    } => {
                        if *crop == 0 && crops.is_empty() {
                            // Another request may have encoded it meanwhile.
                            if let Some((e, tier)) = cache.lock().ok().and_then(|mut c| c.get(key))
                            {
                                Metrics::add(&metrics.cache_hits, 1);
                                if tier == Tier::Disk {
                                    Metrics::add(&metrics.cache_disk_hits, 1);
                                }
                                a.sources
                                    .push(if tier == Tier::Disk { "disk" } else { "ram" });
                                a.encoded.push(e);
                                *image += 1;
                                continue;
                            }
                        }
                        crops.push(pipeline.encode_crop(prepared, *crop).map_err(engine)?);
                        *crop += 1;
                        if *crop == prepared.num_crops {
                            let e = pipeline.finish_image(prepared, crops).map_err(engine)?;
                            Metrics::add(&metrics.cache_misses, 1);
                            if let Ok(mut c) = cache.lock() {
                                c.insert(key.clone(), e.clone());
                                metrics
                                    .cache_bytes
                                    .store(c.bytes() as u64, Ordering::Relaxed);
                            }
                            a.sources.push("miss");
                            a.encoded.push(e);
                            *image += 1;
                            *crop = 0;
                            crops.clear();
                        }
                        a.timings.image_encode_s += t.elapsed().as_secs_f64();
                        return Ok(false);
                    }
                }
            }
            a.timings.image_cache = match a.sources.split_first() {
                None => "none",
                Some((first, rest)) if rest.iter().all(|s| s == first) => first,
                Some(_) => "mixed",
            };
            a.stage = Stage::Embeds;
            Ok(false)
        }
        Stage::Embeds => {
            let embeds = pipeline
                .prompt_embeds(&a.job.input_ids, &a.encoded)
                .map_err(engine)?;
            a.positions = embeds.dims().first().copied().unwrap_or(0);
            a.timings.perceiver_s = t.elapsed().as_secs_f64();
            a.stage = Stage::Prefill {
                embeds,
                choice: 0,
                prefill: None,
            };
            Ok(false)
        }
        Stage::Prefill {
            embeds,
            choice,
            prefill,
        } => {
            if prefill.is_none() {
                let mut params = a.job.params.clone();
                params.sampling.seed = params.sampling.seed.wrapping_add(*choice as u64);
                *prefill = Some(
                    pipeline
                        .begin_prefill(embeds, &a.job.input_ids, &params)
                        .map_err(engine)?,
                );
            }
            let done = match prefill.as_mut() {
                Some(p) => pipeline.prefill_chunk(p, chunk).map_err(engine)?,
                None => false,
            };
            if done {
                if let Some(p) = prefill.take() {
                    let seq = pipeline.finish_prefill(p).map_err(engine)?;
                    a.choices.push(ChoiceState {
                        seq,
                        emitted: 0,
                        done: false,
                    });
                }
                *choice += 1;
            }
            a.timings.prefill_s += t.elapsed().as_secs_f64();
            Ok(*choice >= a.job.n.max(1))
        }
    }
}

/// A fully admitted request: its first tokens, then the running set (or
/// done already, or abandoned).
fn start_streaming(
    pipeline: &Pipeline,
    a: Admitting,
    pass: u64,
    metrics: &Metrics,
) -> Result<Option<Active>, (RequestError, UnboundedSender<Event>)> {
    let latents = pipeline
        .model()
        .config()
        .vision_tokenizer_config
        .num_vis_tokens;
    let usage = Usage {
        prompt_tokens: a.positions,
        image_tokens: a.encoded.iter().map(|e| e.info.num_crops * latents).sum(),
        completion_tokens: 0,
    };
    Metrics::add(&metrics.prompt_tokens, (a.positions * a.job.n) as u64);
    let mut timings = a.timings;
    timings.admission_passes = pass - a.first_pass.unwrap_or(pass);
    let mut active = Active {
        job: a.job,
        choices: a.choices,
        usage,
        timings,
        first_token: None,
        decode_start: Instant::now(),
    };
    for index in 0..active.choices.len() {
        let advanced = catch_unwind(AssertUnwindSafe(|| {
            advance(pipeline, &mut active, index, pass)
        }))
        .unwrap_or_else(|_| Err(RequestError::internal("internal error")));
        if let Err(e) = advanced {
            return Err((e, active.job.events.clone()));
        }
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
fn advance(
    pipeline: &Pipeline,
    a: &mut Active,
    index: usize,
    pass: u64,
) -> Result<(), RequestError> {
    let state = &mut a.choices[index];
    if state.seq.finished.is_some() {
        state.done = true;
        return Ok(());
    }
    let choice: Choice = pipeline
        .choose(&mut state.seq)
        .map_err(|e| RequestError::internal(e.to_string()))?;
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
        pass,
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
