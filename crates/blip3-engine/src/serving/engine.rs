//! The engine a server talks to: [`Engine::submit`] turns a request (prompt
//! text marked by who wrote it, image bytes, generation settings) into a
//! stream of [`Event`]s, [`Submission::cancel`] (or dropping the
//! submission) abandons it. Everything between lives here: tokenizing (with
//! a length bound first), the image-count and context checks, decoding and
//! preprocessing images, the image-embedding cache, admission, batching,
//! stop strings and detokenisation. A server keeps only its wire format.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use blip3_preprocess::AspectMode;
use blip3_tokenizer::MarkedText;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::metrics::Metrics;
use super::request_error::RequestError;
use super::scheduler::{self, Event, Job, JobImage, SchedulerConfig};
use super::vision_cache::{self, Tier, VisionCache};
use crate::{Family, GenerationParams, Pipeline, SamplingParams};

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Requests waiting beyond the running ones before [`ErrorKind::Busy`](super::ErrorKind::Busy).
    pub queue_size: usize,
    /// Most sequences decoded together.
    pub max_batch: usize,
    /// Prompt positions prefilled per scheduler turn while other sequences
    /// are running (bounds their inter-token gap).
    pub prefill_chunk: usize,
    /// Largest decoded image, in pixels (decompression-bomb guard).
    pub max_pixels: u64,
    /// RAM budget of the image cache.
    pub vision_cache_bytes: usize,
    /// Disk tier of the image cache.
    pub vision_cache_dir: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            queue_size: 64,
            max_batch: 8,
            prefill_chunk: 128,
            max_pixels: blip3_preprocess::decode::DEFAULT_MAX_PIXELS,
            vision_cache_bytes: 512 << 20,
            vision_cache_dir: None,
        }
    }
}

/// One image of a request: its file bytes and how to cut it.
#[derive(Debug, Clone)]
pub struct ImageInput {
    /// The encoded file (PNG, JPEG, …).
    pub bytes: Vec<u8>,
    /// `true`: the global view alone (OpenAI's `detail: low`); `false`: the
    /// pipeline's aspect mode.
    pub global_view_only: bool,
    /// Where the image came from in the request (`messages[0].content[1]`),
    /// named by its errors when the request has several.
    pub at: String,
}

/// How many tokens a request may generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenBudget {
    /// Exactly this cap; refused when the prompt leaves less room.
    Exactly(usize),
    /// This cap, or the room the prompt leaves if that is less.
    AtMost(usize),
    /// Up to the end of the context.
    UntilContext,
}

/// A request for the engine.
#[derive(Debug, Clone)]
pub struct EngineRequest {
    /// The prompt: template text, in which control tokens and image markers
    /// are recognised, and clients' text, in which they are not.
    pub prompt: MarkedText,
    /// The images, in the order of the prompt's image markers.
    pub images: Vec<ImageInput>,
    /// Generation cap.
    pub max_tokens: TokenBudget,
    /// Token selection (its seed is replaced by a fresh one unless `seeded`).
    pub sampling: SamplingParams,
    /// Whether `sampling.seed` was given by the client.
    pub seeded: bool,
    /// Choices (choice `i` uses seed `seed + i`).
    pub n: usize,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Whether to report log-probabilities.
    pub logprobs: bool,
    /// Alternatives per token (0 = none).
    pub top_logprobs: usize,
    /// A raw completion (base models, few-shot): stop on `<|endoftext|>` /
    /// `<|endofchunk|>` rather than the chat's `<|end|>`.
    pub completion: bool,
    /// Generate the whole budget, past any stop id.
    pub ignore_eos: bool,
    /// The request field that holds the prompt (`messages`, `prompt`),
    /// named by prompt errors.
    pub param: &'static str,
}

/// A queued request: its events, until `Done` or `Error`.
#[derive(Debug)]
pub struct Submission {
    /// Events in order: tokens, per-choice finishes, then `Done` or `Error`.
    pub events: UnboundedReceiver<Event>,
}

impl Submission {
    /// Abandons the request: the engine drops its sequences at its next
    /// step (dropping the submission does the same).
    pub fn cancel(&mut self) {
        self.events.close();
    }
}

/// What a server needs to know about the loaded model.
#[derive(Debug, Clone, Copy)]
pub struct ModelInfo {
    /// The family member loaded.
    pub family: Family,
    /// Context length in positions.
    pub context: usize,
}

/// The engine: an engine thread running the scheduler over a loaded
/// pipeline, with its queue, image cache and metrics.
pub struct Engine {
    pipeline: Arc<Pipeline>,
    config: EngineConfig,
    jobs: Mutex<Option<SyncSender<Job>>>,
    cache: Arc<Mutex<VisionCache>>,
    metrics: Arc<Metrics>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Engine {
    /// Starts the engine thread for `pipeline`.
    pub fn start(pipeline: Pipeline, config: EngineConfig) -> std::io::Result<Self> {
        let pipeline = Arc::new(pipeline);
        let cache = Arc::new(Mutex::new(VisionCache::new(
            config.vision_cache_bytes,
            config.vision_cache_dir.clone(),
        )?));
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = sync_channel(config.queue_size.max(1));
        let thread = {
            let (pipeline, cache, metrics) = (pipeline.clone(), cache.clone(), metrics.clone());
            let sched = SchedulerConfig {
                max_batch: config.max_batch,
                prefill_chunk: config.prefill_chunk,
            };
            std::thread::Builder::new()
                .name("blip3-engine".into())
                .spawn(move || scheduler::run(pipeline, rx, cache, metrics, sched))?
        };
        Ok(Self {
            pipeline,
            config,
            jobs: Mutex::new(Some(tx)),
            cache,
            metrics,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The engine's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What a server needs to know about the loaded model.
    pub fn model_info(&self) -> ModelInfo {
        ModelInfo {
            family: self.pipeline.family(),
            context: self.context(),
        }
    }

    fn context(&self) -> usize {
        self.pipeline.model().lm().config().max_position_embeddings
    }

    /// Checks and prepares `request` and queues it. This blocks (tokenizing,
    /// decoding and preprocessing images): async callers run it on a
    /// blocking thread.
    pub fn submit(&self, request: EngineRequest) -> Result<Submission, RequestError> {
        let accepted = Instant::now();
        let pipeline = &self.pipeline;
        let param = request.param;
        let context = self.context();
        // A prompt too long for the context whatever it tokenizes to is
        // refused before tokenizing: megabytes of text cost seconds of CPU.
        let most_bytes = context.saturating_mul(pipeline.tokenizer().max_token_bytes());
        if request.prompt.len() > most_bytes {
            return Err(RequestError::invalid(
                format!(
                    "the prompt's {} bytes of text take more than the {context}-token context",
                    request.prompt.len()
                ),
                Some(param),
            )
            .with_code("context_length_exceeded"));
        }
        let input_ids = pipeline.tokenizer().encode_marked(&request.prompt, true);
        self.check_image_count(&input_ids, request.images.len(), param)?;
        let mut images = Vec::with_capacity(request.images.len());
        for image in &request.images {
            let prepared = self.prepare_image(image).map_err(|mut e| {
                if request.images.len() > 1 {
                    e.message = format!("{}: {}", image.at, e.message);
                }
                e
            })?;
            images.push(prepared);
        }
        // Context check: each image's marker becomes crops × latents positions.
        let latents = pipeline
            .model()
            .config()
            .vision_tokenizer_config
            .num_vis_tokens;
        let visual: usize = images.iter().map(|i| i.num_crops() * latents).sum();
        let positions = (input_ids.len() + visual).saturating_sub(images.len());
        if positions >= context {
            return Err(RequestError::invalid(
                format!("the prompt takes {positions} positions (text + visual tokens); the context is {context}"),
                Some(param),
            )
            .with_code("context_length_exceeded"));
        }
        let room = context - positions;
        let max_new_tokens = match request.max_tokens {
            TokenBudget::Exactly(max) if max > room => {
                return Err(RequestError::invalid(
                    format!("max_tokens {max} + the prompt's {positions} positions exceed the {context}-token context"),
                    Some("max_tokens"),
                )
                .with_code("context_length_exceeded"));
            }
            TokenBudget::Exactly(max) => max,
            TokenBudget::AtMost(max) => max.min(room),
            TokenBudget::UntilContext => room,
        };
        let mut sampling = request.sampling.clone();
        if !request.seeded {
            sampling.seed = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        }
        let params = GenerationParams {
            max_new_tokens,
            sampling,
            top_logprobs: request.top_logprobs,
            completion: request.completion,
            ignore_eos: request.ignore_eos,
        };
        let (tx, rx) = unbounded_channel();
        let job = Job {
            input_ids,
            images,
            params,
            n: request.n,
            stop: request.stop,
            logprobs: request.logprobs,
            events: tx,
            accepted,
            param,
        };
        let guard = self
            .jobs
            .lock()
            .map_err(|_| RequestError::internal("internal error"))?;
        let Some(jobs) = guard.as_ref() else {
            return Err(RequestError::unavailable("the server is shutting down"));
        };
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match jobs.try_send(job) {
            Ok(()) => Ok(Submission { events: rx }),
            Err(TrySendError::Full(_)) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                Err(RequestError::busy(format!(
                    "the request queue is full ({} waiting); retry later",
                    self.config.queue_size
                )))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                Err(RequestError::unavailable("the engine has stopped"))
            }
        }
    }

    /// Checks that the prompt's image markers match the images. Markers come
    /// only from the template (clients' text that reads `<image>` stays
    /// text), so a mismatch means a splice rule refuses the count.
    fn check_image_count(
        &self,
        input_ids: &[u32],
        images: usize,
        param: &str,
    ) -> Result<(), RequestError> {
        let image_token = self.pipeline.image_token_id();
        let markers = input_ids.iter().filter(|&&id| id == image_token).count();
        let mismatch = |detail: String| {
            RequestError::invalid(
                format!("the prompt holds {markers} image slot(s) for {images} image(s): {detail}"),
                Some(param),
            )
            .with_code("image_count_mismatch")
        };
        if markers != images {
            return Err(mismatch("each image part places one image".into()));
        }
        // The splice mode's own rule (e.g. first-image-only takes one image).
        self.pipeline
            .check_image_count(input_ids, images)
            .map_err(|e| mismatch(e.to_string()))
    }

    /// One image: from the cache, or decoded and preprocessed.
    fn prepare_image(&self, image: &ImageInput) -> Result<JobImage, RequestError> {
        let pipeline = &self.pipeline;
        let aspect = if image.global_view_only {
            AspectMode::Pad
        } else {
            pipeline.aspect()
        };
        let key = vision_cache::key(
            &image.bytes,
            &format!("{aspect:?}"),
            pipeline.feature_fingerprint(),
        );
        let cached = self.cache.lock().ok().and_then(|mut c| c.get(&key));
        if let Some((encoded, tier)) = cached {
            Metrics::add(&self.metrics.cache_hits, 1);
            if tier == Tier::Disk {
                Metrics::add(&self.metrics.cache_disk_hits, 1);
            }
            return Ok(JobImage::Cached(encoded));
        }
        let decoded = blip3_preprocess::decode::decode_bytes(&image.bytes, self.config.max_pixels)
            .map_err(|e| {
                RequestError::invalid(format!("cannot use the image: {e}"), Some(&image.at))
                    .with_code("invalid_image")
            })?;
        Ok(JobImage::Prepared {
            image: Box::new(pipeline.preprocess_with(&decoded, aspect)),
            key,
        })
    }

    /// Refuses new requests and waits for the engine thread to finish the
    /// running ones.
    pub fn stop(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}
